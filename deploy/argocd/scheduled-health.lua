-- Argo CD health check for sequencer.dev/ScheduledSequence (Lua 5.1, `obj` set).
-- Suspended -> Suspended; refused (Ready False) -> Degraded; the newest finished run failed ->
-- Degraded; scheduled -> Healthy; a status for an older generation -> Progressing.
local hs = {status = "Progressing", message = "Waiting for the sequencer controller"}
if obj.status == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end
local conditions = {}
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    conditions[condition.type] = condition
  end
end
local function message(type, fallback)
  local text = conditions[type] and conditions[type].message
  if text == nil or text == "" then
    return fallback
  end
  return text
end
if conditions["Ready"] ~= nil and conditions["Ready"].status == "False" then
  hs.status = "Degraded"
  hs.message = message("Ready", "The schedule is refused")
elseif conditions["Suspended"] ~= nil and conditions["Suspended"].status == "True" then
  hs.status = "Suspended"
  hs.message = message("Suspended", "spec.suspend is true: no run starts")
elseif obj.status.lastRun ~= nil and obj.status.lastRun.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = "The last run, " .. tostring(obj.status.lastRun.name) .. ", failed"
elseif conditions["Ready"] ~= nil and conditions["Ready"].status == "True" then
  hs.status = "Healthy"
  hs.message = message("Ready", "Scheduled")
end
return hs
