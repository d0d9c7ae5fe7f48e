// Package deploy holds the container, Kubernetes and systemd files; its test
// validates them offline.
//
// The manifests are decoded strictly (unknown or duplicate fields are
// errors) into the Kubernetes API types of k8s.io/api, the same Go types the
// API server decodes into, so a misspelt or misplaced field fails here
// without a cluster and without downloading JSON schemas (kubeconform and
// kubeval fetch theirs from the internet at run time). Then the parts that
// must agree are checked against each other: selectors and labels, named
// ports, probes on the admin port, the preStop sleep, --drain-window,
// --shutdown-timeout and the grace period, the HPA target, the ingress
// backend and its client_id hash, the systemd stop timeout, the image user.
package deploy

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// manifests are the decoded k8s/*.yaml objects.
type manifests struct {
	deployment *appsv1.Deployment
	service    *corev1.Service
	pdb        *policyv1.PodDisruptionBudget
	hpa        *autoscalingv2.HorizontalPodAutoscaler
	ingress    *networkingv1.Ingress
}

// decodeStrict decodes one YAML document into the API type its apiVersion
// and kind name, rejecting unknown and duplicate fields.
func decodeStrict(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	var obj any
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 Deployment":
		obj = &appsv1.Deployment{}
	case "v1 Service":
		obj = &corev1.Service{}
	case "policy/v1 PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		obj = &autoscalingv2.HorizontalPodAutoscaler{}
	case "networking.k8s.io/v1 Ingress":
		obj = &networkingv1.Ingress{}
	default:
		return nil, fmt.Errorf("unexpected apiVersion/kind %q %q", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, err
	}
	return obj, nil
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("k8s", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in k8s/: %v", err)
	}
	m := &manifests{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range docSep.Split(string(b), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			obj, err := decodeStrict([]byte(doc))
			if err != nil {
				t.Errorf("%s document %d: %v", f, i, err)
				continue
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployment = o
			case *corev1.Service:
				m.service = o
			case *policyv1.PodDisruptionBudget:
				m.pdb = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpa = o
			case *networkingv1.Ingress:
				m.ingress = o
			}
		}
	}
	if m.deployment == nil || m.service == nil || m.pdb == nil || m.hpa == nil || m.ingress == nil {
		t.Fatalf("want a Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler and Ingress; got %+v", m)
	}
	return m
}

func stripComments(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
		}
	}
	return b.String()
}

func TestStrictDecodeRejectsUnknownFields(t *testing.T) {
	// The validator itself: a misplaced field must fail.
	bad := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n"
	if _, err := decodeStrict([]byte(bad)); err == nil {
		t.Fatal("a Deployment with spec.replica decoded without error")
	}
	dup := "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nmetadata: {name: y}\n"
	if _, err := decodeStrict([]byte(dup)); err == nil {
		t.Fatal("a duplicate field decoded without error")
	}
}

// flagValue returns the value of --name in args (--name=v or --name v).
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func durationFlag(t *testing.T, args []string, name string) time.Duration {
	t.Helper()
	v, ok := flagValue(args, name)
	if !ok {
		t.Fatalf("no --%s in %q", name, args)
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("--%s: %v", name, err)
	}
	return d
}

func portOf(t *testing.T, args []string, name string) int32 {
	t.Helper()
	v, ok := flagValue(args, name)
	if !ok {
		t.Fatalf("no --%s in %q", name, args)
	}
	i := strings.LastIndexByte(v, ':')
	p, err := strconv.Atoi(v[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("--%s %q: no port", name, v)
	}
	return int32(p)
}

func containerPort(c *corev1.Container, name string) (int32, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// resolvePort turns a probe's or service's named or numbered port into a
// container port number.
func resolvePort(t *testing.T, c *corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	n, ok := containerPort(c, p.StrVal)
	if !ok {
		t.Fatalf("port %q is not a port of container %s", p.StrVal, c.Name)
	}
	return n
}

// graceMargin is what terminationGracePeriodSeconds and TimeoutStopSec keep
// beyond the sleep, the drain window and the shutdown timeout.
const graceMargin = 5 * time.Second

func TestDeploymentProbesAndDrain(t *testing.T) {
	m := loadManifests(t)
	d := m.deployment
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := &pod.Containers[0]
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the Deployment's selector %v does not select its pods %v (%v)", d.Spec.Selector, d.Spec.Template.Labels, err)
	}

	viewer, admin := portOf(t, c.Args, "listen"), portOf(t, c.Args, "admin")
	if p, ok := containerPort(c, "viewer"); !ok || p != viewer {
		t.Errorf("container port viewer = %d, --listen port %d", p, viewer)
	}
	if p, ok := containerPort(c, "admin"); !ok || p != admin {
		t.Errorf("container port admin = %d, --admin port %d", p, admin)
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", pr.name)
			continue
		}
		if pr.probe.HTTPGet.Path != pr.path || resolvePort(t, c, pr.probe.HTTPGet.Port) != admin {
			t.Errorf("%s probe GET %s on port %v, want %s on the admin port %d", pr.name, pr.probe.HTTPGet.Path, pr.probe.HTTPGet.Port.String(), pr.path, admin)
		}
	}

	// Termination: preStop sleep P (still serving while endpoints drop the
	// pod), then SIGTERM and --drain-window D, then --shutdown-timeout S;
	// the grace period must cover P + D + S.
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("no preStop sleep")
	}
	pre := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	drain, shutdown := durationFlag(t, c.Args, "drain-window"), durationFlag(t, c.Args, "shutdown-timeout")
	if pod.TerminationGracePeriodSeconds == nil {
		t.Fatal("no terminationGracePeriodSeconds")
	}
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	if drain <= 0 || pre <= 0 || pre > drain {
		t.Errorf("preStop sleep %v and --drain-window %v: want both set, the sleep no longer than the window", pre, drain)
	}
	if need := pre + drain + shutdown + graceMargin; grace < need {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %v + --drain-window %v + --shutdown-timeout %v + %v", grace, pre, drain, shutdown, graceMargin)
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("a rolling update may take a replica down before its replacement is ready (want maxUnavailable 0)")
	}

	// Non-root, read-only, no privileges; the same user as the image.
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("the pod does not run as a non-root user")
	} else if uid := dockerfileUser(t); int64(uid) != *psc.RunAsUser {
		t.Errorf("runAsUser %d, the image's USER %d", *psc.RunAsUser, uid)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("container securityContext %+v: want a read-only root, no privilege escalation, all capabilities dropped", sc)
	}
	for _, vm := range c.VolumeMounts {
		found := false
		for _, v := range pod.Volumes {
			found = found || v.Name == vm.Name
		}
		if !found {
			t.Errorf("volume mount %q has no volume", vm.Name)
		}
	}
	if v, ok := flagValue(c.Args, "sessions"); ok {
		mounted := false
		for _, vm := range c.VolumeMounts {
			mounted = mounted || strings.HasPrefix(v, vm.MountPath+"/")
		}
		if !mounted {
			t.Errorf("--sessions %s is not on a mounted volume", v)
		}
	}
}

func TestServicePDBHPAIngressAgree(t *testing.T) {
	m := loadManifests(t)
	d := m.deployment
	podLabels := labels.Set(d.Spec.Template.Labels)
	c := &d.Spec.Template.Spec.Containers[0]

	if sel := labels.SelectorFromSet(m.service.Spec.Selector); len(m.service.Spec.Selector) == 0 || !sel.Matches(podLabels) {
		t.Errorf("the Service selector %v does not select the pods %v", m.service.Spec.Selector, podLabels)
	}
	svcPorts := map[string]corev1.ServicePort{}
	for _, p := range m.service.Spec.Ports {
		svcPorts[p.Name] = p
		if got := resolvePort(t, c, p.TargetPort); got != portOf(t, c.Args, "listen") {
			t.Errorf("Service port %s goes to container port %d, not the viewer listener", p.Name, got)
		}
	}
	if m.service.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		t.Error("Service affinity ClientIP: the ingress hashes on client_id instead (docs/SCALING.md)")
	}

	pdbSel, err := metav1.LabelSelectorAsSelector(m.pdb.Spec.Selector)
	if err != nil || pdbSel.Empty() || !pdbSel.Matches(podLabels) {
		t.Errorf("the PodDisruptionBudget selector does not select the pods (%v)", err)
	}
	if m.pdb.Spec.MaxUnavailable == nil && m.pdb.Spec.MinAvailable == nil {
		t.Error("the PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}

	ref := m.hpa.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || ref.Name != d.Name {
		t.Errorf("the HPA scales %s %s/%s, not the Deployment %s", ref.APIVersion, ref.Kind, ref.Name, d.Name)
	}
	if m.hpa.Spec.MinReplicas == nil || *m.hpa.Spec.MinReplicas < 2 || *m.hpa.Spec.MinReplicas > m.hpa.Spec.MaxReplicas {
		t.Errorf("HPA replicas %v..%d: want at least 2 (one may be disrupted) and min ≤ max", m.hpa.Spec.MinReplicas, m.hpa.Spec.MaxReplicas)
	}
	if len(m.hpa.Spec.Metrics) == 0 {
		t.Error("the HPA has no metrics")
	}
	if c.Resources.Requests.Cpu().IsZero() {
		t.Error("no CPU request: the HPA's utilization target has nothing to divide by")
	}

	if hash := m.ingress.Annotations["nginx.ingress.kubernetes.io/upstream-hash-by"]; !strings.Contains(hash, "client_id") {
		t.Errorf("the ingress hashes on %q, want the client_id query parameter", hash)
	}
	paths := 0
	for _, r := range m.ingress.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for _, p := range r.HTTP.Paths {
			paths++
			be := p.Backend.Service
			if be == nil || be.Name != m.service.Name {
				t.Errorf("ingress path %s does not go to the Service %s", p.Path, m.service.Name)
				continue
			}
			if _, ok := svcPorts[be.Port.Name]; !ok && be.Port.Number == 0 {
				t.Errorf("ingress path %s names Service port %q, which does not exist", p.Path, be.Port.Name)
			}
			if !strings.HasSuffix(p.Path, "/v1/stream") {
				t.Errorf("ingress path %s: want /v1/stream or /api/v1/stream", p.Path)
			}
		}
	}
	if paths < 2 {
		t.Errorf("%d ingress paths, want /v1/stream and /api/v1/stream", paths)
	}
}

// dockerfileUser returns the numeric USER of the Dockerfile's last stage.
func dockerfileUser(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	user := ""
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			user = ""
		case "USER":
			if len(f) > 1 {
				user = f[1]
			}
		}
	}
	uid, err := strconv.Atoi(strings.Split(user, ":")[0])
	if err != nil {
		t.Fatalf("the final stage's USER %q is not numeric (runAsNonRoot needs a number)", user)
	}
	return uid
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(s, -1)); n < 2 {
		t.Errorf("%d stages, want a multi-stage build", n)
	}
	if !strings.Contains(s, "CGO_ENABLED=0") {
		t.Error("the binary is not built with CGO_ENABLED=0 (static)")
	}
	if uid := dockerfileUser(t); uid == 0 {
		t.Error("the image runs as root")
	}
}

// systemdService parses the [Service] section (continuation lines joined).
func systemdService(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("systemd", "vncedge.service"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	kv, section := map[string][]string{}, ""
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("systemd unit: bad line %q", line)
			}
			kv[k] = append(kv[k], v)
		}
	}
	return kv
}

func TestSystemdUnitStopCoversDrain(t *testing.T) {
	kv := systemdService(t)
	if len(kv["ExecStart"]) != 1 {
		t.Fatalf("ExecStart %q", kv["ExecStart"])
	}
	args := strings.Fields(kv["ExecStart"][0])[1:]
	drain, shutdown := durationFlag(t, args, "drain-window"), durationFlag(t, args, "shutdown-timeout")
	stop, err := strconv.Atoi(kv["TimeoutStopSec"][0])
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if need := drain + shutdown + graceMargin; time.Duration(stop)*time.Second < need {
		t.Errorf("TimeoutStopSec %ds < --drain-window %v + --shutdown-timeout %v + %v", stop, drain, shutdown, graceMargin)
	}
	if got := kv["KillSignal"]; len(got) != 1 || got[0] != "SIGTERM" {
		t.Errorf("KillSignal %q, want SIGTERM (vncedge drains on it)", got)
	}
	if got := kv["ExecReload"]; len(got) != 1 || !strings.Contains(got[0], "-HUP") {
		t.Errorf("ExecReload %q, want SIGHUP (reloads --sessions)", got)
	}
}

// TestBinaryStaticAndArgsValid builds vncedge as the Dockerfile does and
// checks it is a static executable that accepts the Deployment's and the
// systemd unit's arguments (with --version, which parses every flag and
// exits before reading files or listening).
func TestBinaryStaticAndArgsValid(t *testing.T) {
	if testing.Short() {
		t.Skip("builds vncedge")
	}
	bin := filepath.Join(t.TempDir(), "vncedge")
	build := exec.Command("go", "build", "-o", bin, "../cmd/vncedge")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader (PT_INTERP): not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links %v", libs)
	}

	m := loadManifests(t)
	sets := map[string][]string{
		"deployment": m.deployment.Spec.Template.Spec.Containers[0].Args,
		"systemd":    strings.Fields(systemdService(t)["ExecStart"][0])[1:],
	}
	for name, args := range sets {
		out, err := exec.Command(bin, append(append([]string(nil), args...), "--version")...).CombinedOutput()
		if err != nil || !bytes.HasPrefix(out, []byte("vncedge ")) {
			t.Errorf("%s arguments %q: %v\n%s", name, args, err, out)
		}
	}
}

// TestSystemdGroupsDeclared: every group the unit needs is created by the
// sysusers.d file that ships with it (a fresh host has no vncedge group).
func TestSystemdGroupsDeclared(t *testing.T) {
	kv := systemdService(t)
	b, err := os.ReadFile(filepath.Join("systemd", "vncedge.sysusers"))
	if err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) >= 2 && (f[0] == "g" || f[0] == "u") {
			declared[f[1]] = true
		}
	}
	for _, v := range append(kv["SupplementaryGroups"], kv["Group"]...) {
		for _, g := range strings.Fields(v) {
			if !declared[g] {
				t.Errorf("the unit needs group %q, which vncedge.sysusers does not declare", g)
			}
		}
	}
	if len(kv["SupplementaryGroups"]) == 0 && len(kv["Group"]) == 0 {
		t.Error("the unit names no group: the sessions file would be unreadable")
	}
}

// TestOriginsAndScrapeExplicit: the shipped setups name the allowed browser
// origin (the default refuses cross-origin pages), and the pod template
// carries scrape annotations for the admin port's /metrics.
func TestOriginsAndScrapeExplicit(t *testing.T) {
	m := loadManifests(t)
	pod := m.deployment.Spec.Template
	args := pod.Spec.Containers[0].Args
	hasOrigins := func(args []string) bool {
		for i, a := range args {
			if strings.HasPrefix(a, "--allowed-origins=") || a == "--allowed-origins" && i+1 < len(args) {
				return true
			}
		}
		return false
	}
	if !hasOrigins(args) {
		t.Errorf("Deployment args %q lack --allowed-origins", args)
	}
	if sd := strings.Fields(systemdService(t)["ExecStart"][0]); !hasOrigins(sd) {
		t.Errorf("systemd ExecStart %q lacks --allowed-origins", sd)
	}
	ann := pod.Annotations
	var admin int32
	for _, p := range pod.Spec.Containers[0].Ports {
		if p.Name == "admin" {
			admin = p.ContainerPort
		}
	}
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" || ann["prometheus.io/port"] != strconv.Itoa(int(admin)) {
		t.Errorf("scrape annotations %v, want scrape=true, path=/metrics, port=%d (the admin port)", ann, admin)
	}
}
