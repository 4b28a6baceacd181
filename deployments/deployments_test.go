// Package deployments holds the files that run Comet as a service (NATS
// cluster configuration, systemd units, a compose file, Kubernetes
// manifests) and this test, which checks them against the programs they
// run: every comet option they use is one that `comet -h` lists, every
// role has the options it needs, every --nats URL names a node of the
// NATS cluster defined next to it, every NATS configuration parses with
// JetStream and a three-route cluster, and every file they reference
// exists. No container engine or Kubernetes is needed.
package deployments

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// minMaxPayload is what the bus needs by default: Comet's largest event
// (--max-event-size 99,999) plus bus.HeaderRoom (32 KiB).
const minMaxPayload = 99999 + 32<<10

// invocation is one command line found in a deployment file.
type invocation struct {
	where string   // file:line
	env   string   // "systemd", "compose" or "k8s"
	prog  string   // "comet" or "nats-server"
	args  []string // after the program name
}

func (inv invocation) has(flag string) bool { _, ok := inv.value(flag); return ok }

// value is the value of --flag (or -flag), as "--flag V" or "--flag=V".
func (inv invocation) value(flag string) (string, bool) {
	for i, a := range inv.args {
		name, val, eq := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != flag {
			continue
		}
		if eq {
			return val, true
		}
		if i+1 < len(inv.args) && !strings.HasPrefix(inv.args[i+1], "-") {
			return inv.args[i+1], true
		}
		return "", true
	}
	return "", false
}

var (
	flagsOnce sync.Once
	flags     map[string]bool
	flagsErr  error
)

// cometFlags builds comet and reads the options `comet -h` lists.
func cometFlags(t *testing.T) map[string]bool {
	t.Helper()
	flagsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "comet-deployments")
		if err != nil {
			flagsErr = err
			return
		}
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "comet")
		build := exec.Command("go", "build", "-o", bin, "./cmd/comet")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			flagsErr = fmt.Errorf("go build ./cmd/comet: %v\n%s", err, out)
			return
		}
		out, err := exec.Command(bin, "-h").CombinedOutput()
		if err != nil {
			flagsErr = fmt.Errorf("comet -h: %v\n%s", err, out)
			return
		}
		flags = map[string]bool{}
		// Each option line: "  --name, -alias ARG"; names are lower case.
		for _, line := range regexp.MustCompile(`(?m)^  -.*$`).FindAllString(string(out), -1) {
			for _, m := range regexp.MustCompile(`(?:^|, )--?([a-z0-9][a-z0-9-]*)`).FindAllStringSubmatch(strings.TrimSpace(line), -1) {
				flags[m[1]] = true
			}
		}
		if len(flags) < 20 || !flags["nats"] || !flags["receive"] {
			flagsErr = fmt.Errorf("comet -h lists only %d options:\n%s", len(flags), out)
		}
	})
	if flagsErr != nil {
		t.Fatal(flagsErr)
	}
	return flags
}

// systemdInvocations reads the ExecStart lines of the units.
func systemdInvocations(t *testing.T) []invocation {
	t.Helper()
	units, _ := filepath.Glob("systemd/*.service")
	if len(units) == 0 {
		t.Fatal("no systemd units")
	}
	var out []invocation
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		for i := 0; i < len(lines); i++ {
			rest, ok := strings.CutPrefix(lines[i], "ExecStart=")
			if !ok {
				continue
			}
			where := fmt.Sprintf("%s:%d", u, i+1)
			for strings.HasSuffix(rest, "\\") && i+1 < len(lines) {
				i++
				rest = strings.TrimSuffix(rest, "\\") + " " + lines[i]
			}
			fields := strings.Fields(rest)
			prog := filepath.Base(fields[0])
			if prog != "comet" && prog != "nats-server" {
				t.Errorf("%s: ExecStart runs %s", where, fields[0])
				continue
			}
			out = append(out, invocation{where: where, env: "systemd", prog: prog, args: fields[1:]})
		}
	}
	return out
}

// yamlInvocations reads the command lines of a compose file or of
// Kubernetes manifests without a YAML library, by convention: a comet or
// nats container's arguments are one JSON-style list after `command:` or
// `args:`, somewhere below its `image:`. An image with no such list is an
// error, so the convention cannot be broken silently.
func yamlInvocations(t *testing.T, path, env string) []invocation {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []invocation
	var image, imageAt string // the current container's image, until its arguments
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if v, ok := strings.CutPrefix(trimmed, "image:"); ok {
			if image != "" {
				t.Errorf("%s: image %s has no JSON-style command:/args: list", imageAt, image)
			}
			image, imageAt = strings.Trim(strings.TrimSpace(v), `"'`), fmt.Sprintf("%s:%d", path, n)
			continue
		}
		key, rest, ok := strings.Cut(trimmed, ":")
		if !ok || (key != "command" && key != "args") || image == "" {
			continue
		}
		where := fmt.Sprintf("%s:%d", path, n)
		list := strings.TrimSpace(rest)
		for !json.Valid([]byte(list)) && sc.Scan() {
			n++
			list += " " + strings.TrimSpace(sc.Text())
		}
		var args []string
		if err := json.Unmarshal([]byte(list), &args); err != nil {
			t.Errorf("%s: %s is not a JSON-style list of strings: %v", where, key, err)
			image = ""
			continue
		}
		name := image[strings.LastIndex(image, "/")+1:]
		switch {
		case strings.HasPrefix(name, "comet"):
			out = append(out, invocation{where: where, env: env, prog: "comet", args: args})
		case strings.HasPrefix(name, "nats"):
			out = append(out, invocation{where: where, env: env, prog: "nats-server", args: args})
		default:
			t.Errorf("%s: image %s is neither comet nor nats", where, image)
		}
		image = ""
	}
	if image != "" {
		t.Errorf("%s: image %s has no JSON-style command:/args: list", imageAt, image)
	}
	return out
}

func allInvocations(t *testing.T) []invocation {
	t.Helper()
	invs := systemdInvocations(t)
	invs = append(invs, yamlInvocations(t, "compose/compose.yaml", "compose")...)
	manifests, _ := filepath.Glob("k8s/*.yaml")
	for _, m := range manifests {
		invs = append(invs, yamlInvocations(t, m, "k8s")...)
	}
	return invs
}

// Every option of every comet command line is one comet has, and every
// role has what it needs.
func TestCometCommandLines(t *testing.T) {
	known := cometFlags(t)
	var comets int
	roles := map[string]map[string]bool{} // env -> roles seen
	for _, inv := range allInvocations(t) {
		if inv.prog != "comet" {
			continue
		}
		comets++
		for _, a := range inv.args {
			if !strings.HasPrefix(a, "-") {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !known[name] {
				t.Errorf("%s: comet has no option %s (see comet -h)", inv.where, a)
			}
		}
		receive, broadcast := inv.has("receive") || inv.has("r"), inv.has("broadcast") || inv.has("b")
		kafkaIn := inv.has("kafka") || inv.has("gcn-kafka")
		ingress := receive || inv.has("subscribe") || inv.has("remote") || kafkaIn
		handlers := inv.has("cmd") || inv.has("print-event") || inv.has("save-event") || inv.has("action") || inv.has("kafka-out")
		checkKafka(t, inv)
		if (receive || broadcast) && !inv.has("local-ivo") {
			t.Errorf("%s: --receive and --broadcast need --local-ivo", inv.where)
		}
		if !ingress && !broadcast && !handlers {
			t.Errorf("%s: no role (--receive, --broadcast, --subscribe, --kafka or a handler)", inv.where)
		}
		_, natsSet := inv.value("nats")
		if !natsSet {
			// Only the single-process units run the embedded bus.
			if !((receive || kafkaIn) && broadcast) || inv.env != "systemd" {
				t.Errorf("%s: a scaled-out process needs --nats", inv.where)
			}
			continue
		}
		if r, _ := inv.value("replicas"); r != "3" {
			t.Errorf("%s: --replicas is %q on a 3-node cluster, want 3 (and the same in every process)", inv.where, r)
		}
		if inv.has("eventdb") {
			t.Errorf("%s: --eventdb is unused with --nats", inv.where)
		}
		if broadcast {
			// The egress durable is egress-<node>: it must be set, stable
			// and distinct per egress.
			if node, _ := inv.value("node"); node == "" {
				t.Errorf("%s: an egress needs --node (its durable consumer is named after it)", inv.where)
			}
		}
		if roles[inv.env] == nil {
			roles[inv.env] = map[string]bool{}
		}
		switch {
		case broadcast && !ingress && !handlers:
			roles[inv.env]["egress"] = true
		case ingress && !broadcast && !handlers:
			roles[inv.env]["ingress"] = true
		case handlers && !ingress && !broadcast:
			roles[inv.env]["stage"] = true
		default:
			t.Errorf("%s: a scaled-out process should have one role", inv.where)
		}
	}
	if comets == 0 {
		t.Fatal("no comet command lines found")
	}
	for _, env := range []string{"systemd", "compose", "k8s"} {
		for _, role := range []string{"ingress", "egress", "stage"} {
			if !roles[env][role] {
				t.Errorf("%s: no %s process on the NATS cluster", env, role)
			}
		}
	}
}

// checkKafka: a Kafka source has its topics (--gcn-kafka fills them in)
// and a fixed consumer group (where a restart resumes); every Kafka
// secret comes from a file, in systemd from the unit's credentials
// directory with a LoadCredential line for it, never on the command line.
func checkKafka(t *testing.T, inv invocation) {
	t.Helper()
	if inv.has("kafka") && !inv.has("kafka-topic") {
		t.Errorf("%s: --kafka without --kafka-topic", inv.where)
	}
	if (inv.has("kafka") || inv.has("gcn-kafka")) && !inv.has("kafka-group") {
		t.Errorf("%s: a Kafka source needs a fixed --kafka-group (the default follows --node)", inv.where)
	}
	if inv.has("gcn-kafka") && !inv.has("kafka-client-secret-file") {
		t.Errorf("%s: --gcn-kafka needs --kafka-client-secret-file", inv.where)
	}
	for _, a := range inv.args {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(name, "kafka") && (strings.Contains(name, "password") || strings.Contains(name, "secret")) &&
			!strings.HasSuffix(name, "-file") {
			t.Errorf("%s: %s puts a secret on the command line", inv.where, a)
		}
	}
	if inv.env != "systemd" {
		return
	}
	unit := inv.where[:strings.LastIndex(inv.where, ":")]
	data, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"kafka-client-secret-file", "kafka-password-file", "kafka-out-client-secret-file", "kafka-out-password-file"} {
		v, ok := inv.value(f)
		if !ok {
			continue
		}
		name, found := strings.CutPrefix(v, "${CREDENTIALS_DIRECTORY}/")
		if !found || !regexp.MustCompile(`(?m)^LoadCredential=`+regexp.QuoteMeta(name)+`:/`).Match(data) {
			t.Errorf("%s: --%s %s is not a credential the unit loads (LoadCredential=%s:/PATH)", inv.where, f, v, name)
		}
	}
}

// checkNATSConf: JetStream on, a named cluster with three routes, room for
// Comet's events.
func checkNATSConf(t *testing.T, where, path string) *server.Options {
	t.Helper()
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return nil
	}
	switch {
	case !opts.JetStream:
		t.Errorf("%s: JetStream is not enabled", where)
	case opts.StoreDir == "":
		t.Errorf("%s: no JetStream store_dir", where)
	case opts.ServerName == "":
		t.Errorf("%s: no server_name (JetStream clusters need one per node)", where)
	case opts.Cluster.Name == "" || opts.Cluster.Port == 0:
		t.Errorf("%s: no cluster block with a name and a listen port", where)
	case len(opts.Routes) != 3:
		t.Errorf("%s: %d routes, want 3 (n1..n3)", where, len(opts.Routes))
	case opts.MaxPayload != 0 && opts.MaxPayload < minMaxPayload:
		t.Errorf("%s: max_payload %d is below the %d bytes comet needs", where, opts.MaxPayload, minMaxPayload)
	}
	return opts
}

// routeHosts are the host:port of a configuration's routes, sorted.
func routeHosts(opts *server.Options) []string {
	var hosts []string
	for _, r := range opts.Routes {
		hosts = append(hosts, r.Hostname())
	}
	slices.Sort(hosts)
	return hosts
}

// clusterOf parses the NATS configurations of each environment and
// returns, per environment, the host names of the cluster's nodes and the
// client port.
func clusterOf(t *testing.T) map[string]struct {
	hosts []string
	port  int
} {
	t.Helper()
	out := map[string]struct {
		hosts []string
		port  int
	}{}
	// systemd and compose share deployments/nats/n1..n3.conf.
	confs, _ := filepath.Glob("nats/*.conf")
	if len(confs) != 3 {
		t.Fatalf("nats/: %d configurations, want 3 (n1.conf..n3.conf)", len(confs))
	}
	var names, hosts []string
	var port int
	for _, c := range confs {
		opts := checkNATSConf(t, c, c)
		if opts == nil {
			continue
		}
		if want := strings.TrimSuffix(filepath.Base(c), ".conf"); opts.ServerName != want {
			t.Errorf("%s: server_name %q, want %q (the file name)", c, opts.ServerName, want)
		}
		names = append(names, opts.ServerName)
		h := routeHosts(opts)
		if hosts != nil && !slices.Equal(h, hosts) {
			t.Errorf("%s: routes %v differ from the other nodes' %v", c, h, hosts)
		}
		hosts, port = h, opts.Port
	}
	slices.Sort(names)
	if !slices.Equal(names, hosts) {
		t.Errorf("nats/: server names %v, route hosts %v: each node should be reachable by its name", names, hosts)
	}
	out["systemd"] = struct {
		hosts []string
		port  int
	}{hosts, port}
	out["compose"] = out["systemd"]

	// Kubernetes: the configuration inside the ConfigMap, one for every
	// pod, named by $POD_NAME.
	conf := configMapFile(t, "k8s/nats.yaml", "nats.conf")
	tmp := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(tmp, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", "nats-0")
	if opts := checkNATSConf(t, "k8s/nats.yaml (nats.conf)", tmp); opts != nil {
		if opts.ServerName != "nats-0" {
			t.Errorf("k8s/nats.yaml: server_name %q, want $POD_NAME", opts.ServerName)
		}
		out["k8s"] = struct {
			hosts []string
			port  int
		}{routeHosts(opts), opts.Port}
	}
	return out
}

// configMapFile extracts the block scalar `key: |` of a manifest.
func configMapFile(t *testing.T, path, key string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != key+": |" {
			continue
		}
		indent := len(l) - len(strings.TrimLeft(l, " "))
		var body []string
		for _, b := range lines[i+1:] {
			if strings.TrimSpace(b) != "" && len(b)-len(strings.TrimLeft(b, " ")) <= indent {
				break
			}
			body = append(body, b)
		}
		return dedent(body)
	}
	t.Fatalf("%s: no %q block", path, key+": |")
	return ""
}

func dedent(lines []string) string {
	cut := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if n := len(l) - len(strings.TrimLeft(l, " ")); cut < 0 || n < cut {
			cut = n
		}
	}
	var b strings.Builder
	for _, l := range lines {
		if cut >= 0 && len(l) >= cut {
			l = l[cut:]
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// The NATS configurations parse, declare JetStream and a 3-route cluster,
// and every comet --nats list names exactly the nodes of its cluster.
func TestNATSClusterConfigs(t *testing.T) {
	clusters := clusterOf(t)
	for env, c := range clusters {
		if len(c.hosts) != 3 {
			t.Errorf("%s: cluster hosts %v, want 3", env, c.hosts)
		}
	}
	for _, inv := range allInvocations(t) {
		switch inv.prog {
		case "nats-server":
			// systemd: -c /etc/nats/%i.conf, installed from nats/%i.conf;
			// compose: -c the file mounted from nats/; k8s: the ConfigMap.
			conf, ok := inv.value("c")
			if !ok || conf == "" {
				t.Errorf("%s: nats-server without -c CONFIG", inv.where)
			}
			if inv.env == "systemd" && filepath.Base(conf) != "%i.conf" {
				t.Errorf("%s: -c %s; want /etc/nats/%%i.conf (instances n1..n3 from nats/)", inv.where, conf)
			}
		case "comet":
			urls, ok := inv.value("nats")
			if !ok {
				continue
			}
			c := clusters[inv.env]
			var hosts []string
			for _, u := range strings.Split(urls, ",") {
				pu, err := url.Parse(u)
				if err != nil || pu.Scheme != "nats" {
					t.Errorf("%s: --nats %q: not a nats:// URL", inv.where, u)
					continue
				}
				if p, _ := strconv.Atoi(pu.Port()); p != c.port {
					t.Errorf("%s: --nats %s: port %s, the servers listen on %d", inv.where, u, pu.Port(), c.port)
				}
				hosts = append(hosts, pu.Hostname())
			}
			slices.Sort(hosts)
			if !slices.Equal(hosts, c.hosts) {
				t.Errorf("%s: --nats names %v; the cluster's nodes are %v", inv.where, hosts, c.hosts)
			}
		}
	}
}

// Every file a deployment file or the README points to exists: the NATS
// configurations compose mounts, compose's build context and Dockerfile,
// kustomize's resources, and every deployments/... path in the text.
func TestReferencedFilesExist(t *testing.T) {
	exists := func(where, path string) {
		t.Helper()
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s: %s does not exist", where, path)
		}
	}
	// compose: volume sources that are paths, build context, dockerfile;
	// each NATS service mounts the configuration named after it.
	data, err := os.ReadFile("compose/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var service, context string
	for i, line := range strings.Split(string(data), "\n") {
		where := fmt.Sprintf("compose/compose.yaml:%d", i+1)
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "   ") && strings.HasSuffix(trimmed, ":") {
			service = strings.TrimSuffix(trimmed, ":")
		}
		if v, ok := strings.CutPrefix(trimmed, "- "); ok && (strings.HasPrefix(v, "./") || strings.HasPrefix(v, "../")) {
			src, dst, _ := strings.Cut(v, ":")
			exists(where, filepath.Join("compose", src))
			if strings.HasSuffix(src, ".conf") && strings.HasPrefix(dst, "/etc/nats/") &&
				strings.TrimSuffix(filepath.Base(src), ".conf") != service {
				t.Errorf("%s: service %s mounts %s", where, service, src)
			}
		}
		if v, ok := strings.CutPrefix(trimmed, "context:"); ok {
			context = filepath.Join("compose", strings.TrimSpace(v))
			exists(where, context)
		}
		if v, ok := strings.CutPrefix(trimmed, "dockerfile:"); ok {
			exists(where, filepath.Join(context, strings.TrimSpace(v)))
		}
	}
	// kustomize resources.
	data, err = os.ReadFile("k8s/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	inResources := false
	for i, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "resources:"):
			inResources = true
		case inResources && strings.HasPrefix(strings.TrimSpace(line), "- "):
			exists(fmt.Sprintf("k8s/kustomization.yaml:%d", i+1), filepath.Join("k8s", strings.TrimPrefix(strings.TrimSpace(line), "- ")))
		case !strings.HasPrefix(line, " "):
			inResources = false
		}
	}
	// Every deployments/... or scripts/... path mentioned in this directory
	// (README commands, unit comments) exists, relative to the repository.
	mention := regexp.MustCompile(`(?:^|[\s(\x60"'])((?:deployments|scripts|cmd)/[A-Za-z0-9_@./-]*[A-Za-z0-9_@-])`)
	err = filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.go") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(data), "\n") {
			for _, m := range mention.FindAllStringSubmatch(line, -1) {
				p := strings.NewReplacer("%i", "n1").Replace(m[1])
				exists(fmt.Sprintf("%s:%d", path, i+1), filepath.Join("..", p))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A $(VAR) in a Kubernetes container's arguments is expanded only if the
// container declares VAR (after its args, up to the next document):
// otherwise comet gets the text "$(VAR)", and two egress pods would share
// one durable consumer.
func TestKubernetesArgumentVariablesAreDeclared(t *testing.T) {
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, inv := range allInvocations(t) {
		if inv.env != "k8s" {
			continue
		}
		i := strings.LastIndex(inv.where, ":")
		file := inv.where[:i]
		line, _ := strconv.Atoi(inv.where[i+1:])
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		rest := strings.Split(string(data), "\n")[line-1:]
		var declared []string
		for _, l := range rest {
			if strings.HasPrefix(l, "---") {
				break
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "- name: "); ok {
				declared = append(declared, v)
			}
		}
		for _, a := range inv.args {
			for _, m := range ref.FindAllStringSubmatch(a, -1) {
				if !slices.Contains(declared, m[1]) {
					t.Errorf("%s: %s is not declared in the container's env", inv.where, m[0])
				}
			}
		}
	}
}
