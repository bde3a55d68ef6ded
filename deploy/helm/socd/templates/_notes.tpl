{{/* The text of NOTES.txt (a named template, so tests can render it with helm template). */}}
{{- define "socd.notes" -}}
{{- $exec := printf "%s/%s" (lower .Values.kind) (include "socd.fullname" .) -}}
{{- if .Values.cluster.enabled -}}
{{- $exec = printf "%s-intake" $exec -}}
socd {{ .Chart.AppVersion }} is deployed in Kafka mode in namespace {{ .Release.Namespace }} (docs/scaling.md):
  intake        {{ .Values.kind }} {{ include "socd.fullname" . }}-intake, {{ .Values.cluster.intake.replicaCount }} replica(s)
  rule workers  {{ .Values.kind }} {{ include "socd.fullname" . }}-worker, {{ .Values.cluster.worker.replicaCount }} replica(s) on {{ .Values.cluster.partitions }} partitions per topic
Topics: {{ .Values.cluster.topicPrefix }}.events.by.<group-by fields>; consumer group: {{ .Values.cluster.topicPrefix }}.workers.
At most {{ .Values.cluster.partitions }} workers can be busy: the partition count is fixed when socd creates the topics.
{{- else -}}
socd {{ .Chart.AppVersion }} is deployed as {{ .Values.kind }} {{ include "socd.fullname" . }} ({{ .Values.replicaCount }} replica(s)) in namespace {{ .Release.Namespace }}.
{{- end }}

Check it:
  kubectl -n {{ .Release.Namespace }} get pods -l app.kubernetes.io/instance={{ .Release.Name }}
  kubectl -n {{ .Release.Namespace }} port-forward svc/{{ include "socd.fullname" . }} {{ .Values.ports.http }}
  curl -s localhost:{{ .Values.ports.http }}/readyz      # 200 when every sink is healthy
  kubectl -n {{ .Release.Namespace }} exec {{ $exec }} -- socd check-config -c /etc/socd/socd.yaml --connect
{{- $replicas := ternary .Values.cluster.intake.replicaCount .Values.replicaCount .Values.cluster.enabled }}
{{- if gt (int $replicas) 1 }}

Scale-out: with {{ $replicas }} {{ if .Values.cluster.enabled }}intake {{ end }}replicas, an MQTT message is processed once only when its topic
is a shared subscription, `$share/<group>/<filter>` with one group for all replicas; a
plain topic is delivered to every replica (duplicate alerts).
{{- if not .Values.cluster.enabled }}
Stateful rules (thresholds, distinct counts, sequences) keep their state per replica:
events of one source spread over replicas may never reach a threshold. For correlation
that stays correct across replicas, use the Kafka mode (cluster.enabled, docs/scaling.md).
{{- end }}
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
