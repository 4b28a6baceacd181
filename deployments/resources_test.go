package deployments

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// unit is a systemd unit file's [Service] settings: each key's values in
// order, continuation lines joined.
type unit struct {
	path     string
	settings map[string][]string
}

func (u unit) last(key string) string {
	v := u.settings[key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{path: path, settings: map[string][]string{}}
	section := ""
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";") {
			continue
		}
		if strings.HasPrefix(l, "[") {
			section = l
			continue
		}
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, "\\") + " " + strings.TrimSpace(lines[i])
		}
		if k, v, ok := strings.Cut(l, "="); ok && section == "[Service]" {
			u.settings[k] = append(u.settings[k], v)
		}
	}
	return u
}

// writable is what a unit's process may write: ReadWritePaths, its
// StateDirectory, CacheDirectory, LogsDirectory and RuntimeDirectory,
// and /tmp and /var/tmp with PrivateTmp. With ProtectSystem=strict that
// is all; without it, everything but /usr, /boot and /efi (and /etc with
// "full"): the result is then nil, meaning "not restricted here".
func (u unit) writable() []string {
	if u.last("ProtectSystem") != "strict" {
		return nil
	}
	var out []string
	for _, v := range u.settings["ReadWritePaths"] {
		for _, p := range strings.Fields(v) {
			out = append(out, strings.TrimLeft(p, "-+"))
		}
	}
	for key, base := range map[string]string{"StateDirectory": "/var/lib", "CacheDirectory": "/var/cache",
		"LogsDirectory": "/var/log", "RuntimeDirectory": "/run"} {
		for _, v := range u.settings[key] {
			for _, d := range strings.Fields(v) {
				out = append(out, filepath.Join(base, d))
			}
		}
	}
	if u.last("PrivateTmp") == "true" || u.last("PrivateTmp") == "yes" {
		out = append(out, "/tmp", "/var/tmp")
	}
	return out
}

func under(path string, dirs []string) bool {
	for _, d := range dirs {
		if rel, err := filepath.Rel(d, path); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return true
		}
	}
	return false
}

// Every comet unit can be reloaded (SIGHUP re-reads the whitelist and key
// files; systemd's default for a reload is an error), and everything comet
// or its handlers write lies in a path the unit makes writable: the
// --eventdb store, the --save-event directory, and the working directory
// of --cmd handlers (they run there). With ProtectSystem=strict anything
// else is read-only, and the process would fail at its first write.
func TestSystemdUnitsReloadAndWrite(t *testing.T) {
	units, _ := filepath.Glob("systemd/*.service")
	if len(units) == 0 {
		t.Fatal("no systemd units")
	}
	invs := map[string]invocation{}
	for _, inv := range systemdInvocations(t) {
		invs[inv.where[:strings.LastIndex(inv.where, ":")]] = inv
	}
	for _, path := range units {
		u := readUnit(t, path)
		inv, ok := invs[path]
		if !ok {
			t.Errorf("%s: no ExecStart found", path)
			continue
		}
		if got := u.last("ExecReload"); got != "/bin/kill -s HUP $MAINPID" {
			t.Errorf("%s: ExecReload=%q, want /bin/kill -s HUP $MAINPID", path, got)
		}
		if inv.prog != "comet" {
			continue
		}
		if u.last("ProtectSystem") != "strict" {
			t.Errorf("%s: ProtectSystem is not strict", path)
		}
		w := u.writable()
		workdir := u.last("WorkingDirectory")
		if workdir == "" {
			workdir = "/" // systemd's default for system services
		}
		check := func(what, dir string) {
			t.Helper()
			if !filepath.IsAbs(dir) {
				dir = filepath.Join(workdir, dir)
			}
			if !under(dir, w) {
				t.Errorf("%s: %s %s is not writable (ReadWritePaths %v)", path, what, dir, w)
			}
		}
		if _, external := inv.value("nats"); !external {
			db, ok := inv.value("eventdb")
			if !ok {
				t.Errorf("%s: the embedded bus on the default temporary store; give --eventdb", path)
			} else {
				check("--eventdb", db)
			}
		}
		save := inv.has("save-event")
		if a, _ := inv.value("action"); a == "save-event" {
			save = true
		}
		if save {
			dir, ok := inv.value("save-event-directory")
			if !ok {
				dir = workdir
			}
			check("--save-event-directory", dir)
		}
		if inv.has("cmd") {
			check("the working directory of --cmd handlers", workdir)
		}
	}
}

// k8sDoc is the part of a Kubernetes object this test reads.
type k8sDoc struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Replicas       *int           `yaml:"replicas"`
		MaxUnavailable any            `yaml:"maxUnavailable"` // an integer or a percentage
		MinAvailable   any            `yaml:"minAvailable"`
		Selector       *labelSelector `yaml:"selector"`
		Template       *podTemplate   `yaml:"template"`
	} `yaml:"spec"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type podTemplate struct {
	Metadata struct {
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec struct {
		Containers []container `yaml:"containers"`
	} `yaml:"spec"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Env            []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"` // a name or a number
	} `yaml:"httpGet"`
}

func readManifests(t *testing.T) []k8sDoc {
	t.Helper()
	files, _ := filepath.Glob("k8s/*.yaml")
	var docs []k8sDoc
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bufio.NewReader(fh))
		for {
			var d k8sDoc
			err := dec.Decode(&d)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if d.Kind != "" {
				docs = append(docs, d)
			}
		}
		fh.Close()
	}
	return docs
}

// bytesOf parses a Kubernetes memory quantity (Ki, Mi, Gi, k, M, G or
// plain bytes) or a GOMEMLIMIT value (KiB, MiB, GiB or plain bytes).
func bytesOf(q string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(q, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v * u.mult, err
		}
	}
	return strconv.ParseInt(q, 10, 64)
}

// Every container of every workload has CPU and memory requests and a
// memory limit at or above its request, and its GOMEMLIMIT (all are Go
// programs) is set below that limit, so the Go heap gives way before the
// kernel kills the pod. Every workload has a PodDisruptionBudget that
// selects its pods and lets a drain proceed one pod at a time.
func TestKubernetesResourcesAndDisruptionBudgets(t *testing.T) {
	docs := readManifests(t)
	var workloads, budgets []k8sDoc
	for _, d := range docs {
		switch d.Kind {
		case "Deployment", "StatefulSet", "DaemonSet":
			workloads = append(workloads, d)
		case "PodDisruptionBudget":
			budgets = append(budgets, d)
		}
	}
	if len(workloads) < 4 {
		t.Fatalf("%d workloads in k8s/, want ingress, egress, stage and nats", len(workloads))
	}
	for _, w := range workloads {
		name := fmt.Sprintf("%s %s", w.Kind, w.Metadata.Name)
		if w.Spec.Template == nil || len(w.Spec.Template.Spec.Containers) == 0 {
			t.Errorf("%s: no containers", name)
			continue
		}
		for _, c := range w.Spec.Template.Spec.Containers {
			where := fmt.Sprintf("%s container %s", name, c.Name)
			req, lim := c.Resources.Requests, c.Resources.Limits
			if req["cpu"] == "" || req["memory"] == "" {
				t.Errorf("%s: requests %v, want cpu and memory", where, req)
			}
			limit, err := bytesOf(lim["memory"])
			if err != nil || limit <= 0 {
				t.Errorf("%s: memory limit %q: %v", where, lim["memory"], err)
				continue
			}
			if r, err := bytesOf(req["memory"]); err != nil || r > limit {
				t.Errorf("%s: memory request %q above the limit %q (%v)", where, req["memory"], lim["memory"], err)
			}
			gomem := ""
			for _, e := range c.Env {
				if e.Name == "GOMEMLIMIT" {
					gomem = e.Value
				}
			}
			if g, err := bytesOf(gomem); err != nil || g <= 0 || g >= limit {
				t.Errorf("%s: GOMEMLIMIT %q, want a value below the memory limit %s (%v)", where, gomem, lim["memory"], err)
			}
		}

		var budget *k8sDoc
		for i, b := range budgets {
			if b.Spec.Selector != nil && selects(b.Spec.Selector.MatchLabels, w.Spec.Template.Metadata.Labels) {
				if budget != nil {
					t.Errorf("%s: selected by two budgets, %s and %s", name, budget.Metadata.Name, b.Metadata.Name)
				}
				budget = &budgets[i]
			}
		}
		if budget == nil {
			t.Errorf("%s: no PodDisruptionBudget selects its pods", name)
			continue
		}
		replicas := 1
		if w.Spec.Replicas != nil {
			replicas = *w.Spec.Replicas
		}
		// Percentages round: check them as the pods they come to.
		pods := func(v any) (int, bool) {
			switch v := v.(type) {
			case int:
				return v, true
			case string:
				p, err := strconv.Atoi(strings.TrimSuffix(v, "%"))
				if err != nil || !strings.HasSuffix(v, "%") {
					return 0, false
				}
				return (p*replicas + 99) / 100, true
			}
			return 0, false
		}
		maxU, minA := budget.Spec.MaxUnavailable, budget.Spec.MinAvailable
		switch {
		case maxU != nil && minA != nil:
			t.Errorf("budget %s: both maxUnavailable and minAvailable", budget.Metadata.Name)
		case maxU != nil:
			if n, ok := pods(maxU); !ok || n < 1 || n >= replicas {
				t.Errorf("budget %s: maxUnavailable %v for %d replicas: want at least 1 pod (or drains block) and fewer than all",
					budget.Metadata.Name, maxU, replicas)
			}
		case minA != nil:
			if n, ok := pods(minA); !ok || n < 1 || n >= replicas {
				t.Errorf("budget %s: minAvailable %v for %d replicas: want at least 1 pod and fewer than all (or drains block)",
					budget.Metadata.Name, minA, replicas)
			}
		default:
			t.Errorf("budget %s: neither maxUnavailable nor minAvailable", budget.Metadata.Name)
		}
	}
}

// selects reports whether a matchLabels selector (non-empty) matches a
// pod's labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
