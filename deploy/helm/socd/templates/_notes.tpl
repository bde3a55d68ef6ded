{{/* The text of NOTES.txt (a named template, so tests can render it with helm template). */}}
{{- define "socd.notes" -}}
socd {{ .Chart.AppVersion }} is deployed as {{ .Values.kind }} {{ include "socd.fullname" . }} ({{ .Values.replicaCount }} replica(s)) in namespace {{ .Release.Namespace }}.

Check it:
  kubectl -n {{ .Release.Namespace }} get pods -l app.kubernetes.io/instance={{ .Release.Name }}
  kubectl -n {{ .Release.Namespace }} port-forward svc/{{ include "socd.fullname" . }} {{ .Values.ports.http }}
  curl -s localhost:{{ .Values.ports.http }}/readyz      # 200 when every sink is healthy
  kubectl -n {{ .Release.Namespace }} exec {{ lower .Values.kind }}/{{ include "socd.fullname" . }} -- socd check-config -c /etc/socd/socd.yaml --connect
{{- if gt (int .Values.replicaCount) 1 }}

Scale-out: with {{ .Values.replicaCount }} replicas, an MQTT message is processed once only when its topic
is a shared subscription, `$share/<group>/<filter>` with one group for all replicas; a
plain topic is delivered to every replica (duplicate alerts).
{{- range $name, $c := .Values.config.collectors }}
{{- if eq (toString $c.type) "mqtt" }}
{{- range $c.topics }}{{ if not (hasPrefix "$share/" .) }}
  WARNING: collector {{ $name }} subscribes to "{{ . }}" without $share/: each replica gets every message.
{{- end }}{{ end }}
{{- range $c.subscriptions }}{{ if not (hasPrefix "$share/" .topic) }}
  WARNING: collector {{ $name }} subscribes to "{{ .topic }}" without $share/: each replica gets every message.
{{- end }}{{ end }}
{{- end }}
{{- end }}
{{- end }}
{{- if not .Values.persistence.enabled }}

state_dir (/var/lib/socd: spool, notification queue, IoC database, dead letters) is an
emptyDir: it is lost when a pod is deleted. Set persistence.enabled=true to keep it.
{{- end }}
{{- if .Values.sensor.enabled }}

The network sensor runs on every selected node (DaemonSet {{ include "socd.fullname" . }}-sensor), on the
host network, capturing interface {{ .Values.sensor.interface }}; its /metrics is on port {{ .Values.sensor.httpPort }} of each node.
Its namespace must allow hostNetwork and NET_RAW (Pod Security Standard "privileged").
{{- end }}
{{- $missing := list }}
{{- range $group, $s := .Values.secrets }}{{ if not $s.existingSecret }}{{ $missing = append $missing $group }}{{ end }}{{ end }}
{{- if $missing }}

Entries of `secrets` without existingSecret (no variables set from them): {{ join ", " $missing }}.
{{- end }}
{{- end -}}
