package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/comet-go/comet/internal/vtptest"
)

// proc is a child process whose output goes to a log file.
type proc struct {
	name    string
	args    []string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

// startProc starts bin with args; its output goes to dir/name.log (a new
// file per start, so a restarted process keeps the old log).
func startProc(t *testing.T, dir, name, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	for i := 2; ; i++ {
		if _, err := os.Stat(logPath); err != nil {
			break
		}
		logPath = filepath.Join(dir, fmt.Sprintf("%s.%d.log", name, i))
	}
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := &proc{name: name, args: args, cmd: exec.Command(bin, args...), logPath: logPath, exited: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- %s (%s) log tail:\n%s", name, filepath.Base(logPath), tail(p.log(), 40))
		}
	})
	return p
}

func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// waitLog waits until the log contains s, failing at once if the process
// exits.
func (p *proc) waitLog(s string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if strings.Contains(p.log(), s) {
			return nil
		}
		if !p.running() {
			return fmt.Errorf("%s exited before logging %q:\n%s", p.name, s, tail(p.log(), 40))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not log %q within %v:\n%s", p.name, s, d, tail(p.log(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// natsNode is one nats-server of the test cluster.
type natsNode struct {
	name                            string
	clientPort, routePort, httpPort int
	p                               *proc
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort) }

// natsConf is a cluster member's configuration: JetStream on, explicit
// routes to every member (its own is ignored), monitoring for readiness.
func natsConf(n *natsNode, nodes []*natsNode, storeDir string) string {
	var routes []string
	for _, o := range nodes {
		routes = append(routes, fmt.Sprintf("\"nats://127.0.0.1:%d\"", o.routePort))
	}
	return fmt.Sprintf(`server_name: %s
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 4GB
}
cluster {
  name: "comet-test"
  listen: "127.0.0.1:%d"
  routes: [%s]
}
`, n.name, n.clientPort, n.httpPort, storeDir, n.routePort, strings.Join(routes, ", "))
}

// startNATSCluster starts three JetStream nodes n1..n3 and waits until
// every one reports the same meta leader of a 3-node meta group.
func startNATSCluster(t *testing.T, dir string) []*natsNode {
	t.Helper()
	ports := vtptest.FreePorts(t, 9)
	var nodes []*natsNode
	for i := range 3 {
		nodes = append(nodes, &natsNode{name: fmt.Sprintf("n%d", i+1),
			clientPort: ports[3*i], routePort: ports[3*i+1], httpPort: ports[3*i+2]})
	}
	for _, n := range nodes {
		conf := filepath.Join(dir, n.name+".conf")
		if err := os.WriteFile(conf, []byte(natsConf(n, nodes, filepath.Join(dir, n.name+"-store"))), 0o644); err != nil {
			t.Fatal(err)
		}
		n.p = startProc(t, dir, n.name, filepath.Join(binDir, "nats-server"), "-c", conf)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		leaders := map[string]bool{}
		ok := true
		for _, n := range nodes {
			if !n.p.running() {
				t.Fatalf("nats-server %s exited:\n%s", n.name, tail(n.p.log(), 40))
			}
			jz, err := jsz(n)
			if err != nil || jz.Meta.Leader == "" || jz.Meta.Size != 3 || len(jz.Meta.Replicas) != 2 {
				ok = false
				break
			}
			leaders[jz.Meta.Leader] = true
		}
		if ok && len(leaders) == 1 {
			return nodes
		}
		if time.Now().After(deadline) {
			t.Fatalf("no JetStream meta leader agreed by all three nodes within 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type jszReply struct {
	Meta struct {
		Leader   string `json:"leader"`
		Size     int    `json:"cluster_size"`
		Replicas []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
		} `json:"replicas"`
	} `json:"meta_cluster"`
}

func jsz(n *natsNode) (*jszReply, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", n.httpPort))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	var r jszReply
	if err := json.Unmarshal(buf.Bytes(), &r); err != nil {
		return nil, err
	}
	return &r, nil
}
