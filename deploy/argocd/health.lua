-- Argo CD health check for sequencer.dev/Sequence (Argo CD runs it with Lua 5.1, `obj` set).
-- Held -> Degraded (the controller cannot continue the run from its status), Complete -> Healthy,
-- Failed -> Degraded, Suspended -> Suspended, anything else -> Progressing; a status written for an
-- older generation than the object's is Progressing too.
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
local function holds(type)
  return conditions[type] ~= nil and conditions[type].status == "True"
end
local function message(type, fallback)
  local text = conditions[type] and conditions[type].message
  if text == nil or text == "" then
    return fallback
  end
  return text
end
if holds("Held") then
  hs.status = "Degraded"
  hs.message = message("Held", "The controller holds the run: its status cannot be read")
elseif holds("Failed") then
  hs.status = "Degraded"
  hs.message = message("Failed", "The run failed")
elseif holds("Complete") then
  hs.status = "Healthy"
  hs.message = message("Complete", "Every step is done")
elseif holds("Suspended") then
  hs.status = "Suspended"
  hs.message = message("Suspended", "spec.suspend holds back the next step")
elseif holds("Running") then
  hs.message = message("Running", "A step is running")
  if obj.status.progress ~= nil then
    hs.message = hs.message .. " (" .. obj.status.progress .. " done)"
  end
end
return hs
