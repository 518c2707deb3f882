{{/* The operator's namespace. */}}
{{- define "jobtoken.namespace" -}}
{{- default .Release.Namespace .Values.namespace -}}
{{- end -}}

{{/* The manager's image. */}}
{{- define "jobtoken.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
