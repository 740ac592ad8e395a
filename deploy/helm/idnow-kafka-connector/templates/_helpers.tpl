{{/* The chart name used in resource names and app.kubernetes.io/name. */}}
{{- define "idnow.name" -}}
{{- default "idnow-connector" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The resource-name prefix. A release whose name contains the chart name (the usual
"idnow-connector") is used as is, so the defaults produce the names of the kustomize base, which
the alerts and the StatefulSet's transactional ids are built on.
*/}}
{{- define "idnow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "idnow.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "idnow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "idnow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: idnow-connector
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: pass (dict "ctx" $ "component" "ingress"). */}}
{{- define "idnow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "idnow.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "idnow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "idnow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "idnow.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* The port of a listen address in config ("host:port" or ":port"), or the default. */}}
{{- define "idnow.port" -}}
{{- $listen := .listen | default .default | toString -}}
{{- $port := $listen | splitList ":" | last -}}
{{- if not (regexMatch "^[0-9]+$" $port) -}}
{{- fail (printf "%s = %q: want host:port or :port with a numeric port" .key $listen) -}}
{{- end -}}
{{- $port -}}
{{- end -}}

{{- define "idnow.adminPort" -}}
{{- include "idnow.port" (dict "listen" (dig "admin" "listen" "" .Values.config) "default" ":9090" "key" "config.admin.listen") -}}
{{- end -}}

{{- define "idnow.httpPort" -}}
{{- include "idnow.port" (dict "listen" (dig "ingress" "listen" "" .Values.config) "default" ":8080" "key" "config.ingress.listen") -}}
{{- end -}}

{{/* Pod annotations shared by all workloads: prometheus.io/*, the config checksum, user's. */}}
{{- define "idnow.podAnnotations" -}}
{{- if .Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ include "idnow.adminPort" . | quote }}
prometheus.io/path: /metrics
{{- end }}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The container's volume mounts and the pod's volumes, shared by all workloads: pass
(dict "ctx" $ "keys" <secret keys>).
*/}}
{{- define "idnow.volumeMounts" -}}
- name: config
  mountPath: /etc/idnow-connector/config.yaml
  subPath: config.yaml
  readOnly: true
{{- if .ctx.Values.kafkaCA.existingSecret }}
- name: kafka-ca
  mountPath: {{ .ctx.Values.kafkaCA.mountPath }}
  readOnly: true
{{- end }}
{{- if .keys }}
- name: secrets
  mountPath: {{ .ctx.Values.secrets.mountPath }}
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "idnow.volumes" -}}
- name: config
  configMap:
    name: {{ include "idnow.fullname" .ctx }}-config
{{- if .ctx.Values.kafkaCA.existingSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .ctx.Values.kafkaCA.existingSecret }}
{{- end }}
{{- if .keys }}
- name: secrets
  secret:
    secretName: {{ required "secrets.existingSecret is required: the Secret with the connector's credentials (deploy/kubernetes/base/secret.example.yaml lists its keys)" .ctx.Values.secrets.existingSecret }}
    defaultMode: 0440
    items:
      {{- range .keys }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end }}
- name: tmp
  emptyDir:
    sizeLimit: 16Mi
{{- end -}}

{{/* topologySpreadConstraints with the component's labelSelector added to each entry. */}}
{{- define "idnow.topologySpread" -}}
{{- range .constraints }}
- {{ toYaml . | nindent 2 | trim }}
  labelSelector:
    matchLabels:
      {{- include "idnow.selectorLabels" (dict "ctx" $.ctx "component" $.component) | nindent 6 }}
{{- end }}
{{- end -}}
