{{/* The chart's name. */}}
{{- define "sequencer.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name: the release name, with the chart's name added unless it holds it. */}}
{{- define "sequencer.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sequencer.controllerName" -}}
{{- printf "%s-controller" (include "sequencer.fullname" .) }}
{{- end }}

{{- define "sequencer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sequencer.controllerName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sequencer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sequencer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/* Every controller pod of the release, whatever its shard (the metrics Service's selector). */}}
{{- define "sequencer.podSelectorLabels" -}}
app.kubernetes.io/name: {{ include "sequencer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* One shard's Deployment: its name and its pods' selector. Called with (dict "root" $ "shard" NAME);
     the default shard (NAME "") keeps the unsharded names, so turning sharding on changes nothing for it. */}}
{{- define "sequencer.shardControllerName" -}}
{{- if .shard }}{{ printf "%s-%s" (include "sequencer.controllerName" .root) .shard }}{{ else }}{{ include "sequencer.controllerName" .root }}{{ end }}
{{- end }}

{{- define "sequencer.shardSelectorLabels" -}}
{{- if .shard }}
{{- include "sequencer.podSelectorLabels" .root }}
app.kubernetes.io/component: controller-{{ .shard }}
sequencer.dev/shard: {{ .shard }}
{{- else }}
{{- include "sequencer.selectorLabels" .root }}
{{- end }}
{{- end }}

{{- define "sequencer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sequencer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sequencer
{{- end }}

{{/* The rules on Sequences, ConfigMaps and Events, for a ClusterRole or a namespaced Role. */}}
{{- define "sequencer.rules" -}}
- apiGroups: [sequencer.dev]
  resources: [sequences]
  verbs: [get, list, watch, patch, update, create, delete]
- apiGroups: [sequencer.dev]
  resources: [sequences/status]
  verbs: [get, update, patch]
- apiGroups: [sequencer.dev]
  resources: [scheduledsequences]
  verbs: [get, list, watch]
- apiGroups: [sequencer.dev]
  resources: [scheduledsequences/status]
  verbs: [get, update, patch]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.gitCredentials.enabled }}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
{{- end }}
{{- end }}
