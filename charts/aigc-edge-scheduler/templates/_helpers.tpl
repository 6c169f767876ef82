{{/* Prefix of every object name: fullnameOverride or the release name. */}}
{{- define "aigc.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of a component; call with (dict "ctx" $ "component" "operator"). */}}
{{- define "aigc.labels" -}}
{{ include "aigc.selectorLabels" . }}
app.kubernetes.io/part-of: aigc-edge-scheduler
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
{{- end -}}

{{- define "aigc.selectorLabels" -}}
app.kubernetes.io/name: aigc-{{ .component }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end -}}

{{/* Object (and ServiceAccount) name of a component: <fullname>-<component>. */}}
{{- define "aigc.name" -}}
{{ include "aigc.fullname" .ctx }}-{{ .component }}
{{- end -}}

{{- define "aigc.serviceAccountUser" -}}
system:serviceaccount:{{ .ctx.Release.Namespace }}:{{ include "aigc.name" . }}
{{- end -}}

{{/* image: repository:tag, the tag defaulting to the chart's appVersion; call with (dict "ctx" $ "image" .Values.image.operator). */}}
{{- define "aigc.image" -}}
{{ .image.repository }}:{{ .image.tag | default .ctx.Chart.AppVersion }}
{{- end -}}

{{/* A volume from a PVC when existingClaim is set, else from a hostPath; call with (dict "name" "results" "source" .Values.worker.results). */}}
{{- define "aigc.nodeVolume" -}}
- name: {{ .name }}
{{- if .source.existingClaim }}
  persistentVolumeClaim: {claimName: {{ .source.existingClaim }}}
{{- else }}
  hostPath: {path: {{ .source.hostPath }}, type: DirectoryOrCreate}
{{- end }}
{{- end -}}

{{/* The two ConfigMaps both components mount. */}}
{{- define "aigc.catalogConfigMap" -}}{{ include "aigc.fullname" . }}-model-catalog{{- end -}}
{{- define "aigc.perfProfileConfigMap" -}}{{ include "aigc.fullname" . }}-perf-profile{{- end -}}

{{/*
Binds a ClusterRole to a ServiceAccount: cluster-wide when taskNamespaces is empty, otherwise by a
RoleBinding in each task namespace (a RoleBinding may grant a ClusterRole's rules in one namespace).
Call with (dict "ctx" $ "component" "operator" "role" "aigc-operator-tasks").
*/}}
{{- define "aigc.taskBindings" -}}
{{- $subject := dict "kind" "ServiceAccount" "name" (include "aigc.name" .) "namespace" .ctx.Release.Namespace -}}
{{- $namespaces := .ctx.Values.taskNamespaces | default (list "") -}}
{{- range $namespaces }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ if . }}RoleBinding{{ else }}ClusterRoleBinding{{ end }}
metadata:
  name: {{ $.role }}
  {{- with . }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "aigc.labels" $ | nindent 4 }}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {{ $.role }}}
subjects:
  - {{ toJson $subject }}
{{- end }}
{{- end -}}
