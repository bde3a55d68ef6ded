{{/*
One socd workload (Deployment or StatefulSet, .Values.kind): the single pipeline, or in
Kafka mode (cluster.enabled) the intake or the rule workers. Every workload has the
same hardened pod; they differ in name, component label, replicas, resources and the
role they run (`socd run --role`). The argument is a dict:
  root       the chart's root context
  name       resource name
  component  app.kubernetes.io/component (pipeline, intake, worker)
  role       "" (the single pipeline: no --role) or intake / worker
  replicas   replica count
  resources  container resources
  service    the StatefulSet's governing Service
*/}}
{{- define "socd.workload" -}}
{{- $root := .root -}}
{{- $values := $root.Values -}}
{{- $statefulSet := eq $values.kind "StatefulSet" -}}
{{- if and $values.persistence.enabled (not $statefulSet) (gt (int .replicas) 1) -}}
{{- fail "persistence.enabled with kind Deployment is one ReadWriteOnce claim shared by every replica: set replicaCount to 1, or kind: StatefulSet (one claim per replica)" -}}
{{- end -}}
apiVersion: apps/v1
kind: {{ $values.kind }}
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "socd.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  replicas: {{ .replicas }}
  revisionHistoryLimit: 5
  {{- if $statefulSet }}
  serviceName: {{ .service }}
  # Replicas share nothing but the broker: start and stop them in parallel.
  podManagementPolicy: Parallel
  {{- else if $values.persistence.enabled }}
  # A ReadWriteOnce claim cannot be mounted by the old and the new pod at once.
  strategy:
    type: Recreate
  {{- else }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  {{- end }}
  selector:
    matchLabels:
      {{- include "socd.selectorLabels" $root | nindent 6 }}
      app.kubernetes.io/component: {{ .component }}
  template:
    metadata:
      labels:
        {{- include "socd.selectorLabels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
        {{- with $values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # Pods roll when the configuration or the custom rules change.
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "socd.serviceAccountName" $root }}
      # socd never talks to the Kubernetes API.
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with $values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ include "socd.terminationGrace" $root }}
      securityContext:
        runAsNonRoot: true
        runAsUser: {{ $values.securityContext.runAsUser }}
        runAsGroup: {{ $values.securityContext.runAsGroup }}
        fsGroup: {{ $values.securityContext.fsGroup }}
        fsGroupChangePolicy: OnRootMismatch
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: socd
          image: {{ include "socd.image" $root }}
          imagePullPolicy: {{ $values.image.pullPolicy }}
          {{- if .role }}
          args: ["run", "-c", "/etc/socd/socd.yaml", "--role", {{ .role | quote }}]
          {{- else }}
          args: ["run", "-c", "/etc/socd/socd.yaml"]
          {{- end }}
          env:
            {{- include "socd.env" $root | nindent 12 }}
          ports:
            - name: http
              containerPort: {{ $values.ports.http }}
              protocol: TCP
            {{- if ne .role "worker" }}
            {{- range $values.service.extraPorts }}
            - name: {{ .name }}
              containerPort: {{ default .port .targetPort }}
              protocol: {{ default "TCP" .protocol }}
            {{- end }}
            {{- end }}
          {{- include "socd.probes" (list $root "http") | nindent 10 }}
          securityContext:
            runAsNonRoot: true
            privileged: false
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: [ALL]
            seccompProfile:
              type: RuntimeDefault
          resources:
            {{- toYaml .resources | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/socd
              readOnly: true
            - name: state
              mountPath: /var/lib/socd
            - name: tmp
              mountPath: /tmp
      volumes:
        {{- include "socd.configVolume" (dict "root" $root "configMap" (include "socd.fullname" $root)) | nindent 8 }}
        - name: tmp
          emptyDir:
            sizeLimit: 256Mi
        {{- if not $values.persistence.enabled }}
        - name: state
          emptyDir:
            sizeLimit: {{ $values.stateSizeLimit }}
        {{- else if not $statefulSet }}
        - name: state
          persistentVolumeClaim:
            claimName: {{ default (printf "%s-state" (include "socd.fullname" $root)) $values.persistence.existingClaim }}
        {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  {{- if and $statefulSet $values.persistence.enabled }}
  volumeClaimTemplates:
    - metadata:
        name: state
        labels:
          {{- include "socd.selectorLabels" $root | nindent 10 }}
      spec:
        accessModes:
          {{- toYaml $values.persistence.accessModes | nindent 10 }}
        {{- with $values.persistence.storageClass }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ $values.persistence.size }}
  {{- end }}
{{- end -}}
