//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// envPrefix is the connector's environment prefix (internal/config.EnvPrefix); children are
	// configured through it only, so the suite exercises the same path an operator uses.
	envPrefix = "IDNOW_CONNECTOR_"

	// readyTimeout bounds how long a child may take to answer /readyz with 200: connecting to
	// the broker, creating topics, joining the group.
	readyTimeout = 60 * time.Second

	// stopTimeout bounds a graceful stop (SIGTERM) of a child; the connector's own shutdown
	// budget (ingress.shutdown_timeout + 15 s) is lowered by the suite's configuration.
	stopTimeout = 45 * time.Second

	// logTailLines is how much of a child's log a failing test prints.
	logTailLines = 80
)

// builtBinary is the connector binary the suite runs as child processes, built once per test
// binary.
var builtBinary struct {
	once sync.Once
	path string
	err  error
}

// connectorBinary returns the path of an idnow-connector binary built from the working tree.
// It is built once per test binary into the git-ignored .cache/itest (go build's cache makes
// that cheap after the first time), so the suite never runs a stale bin/idnow-connector.
// ITEST_BINARY names a prebuilt binary instead.
func connectorBinary(t testing.TB) string {
	t.Helper()
	builtBinary.once.Do(func() {
		if p := os.Getenv("ITEST_BINARY"); p != "" {
			if _, err := os.Stat(p); err != nil {
				builtBinary.err = fmt.Errorf("ITEST_BINARY=%s: %w (unset it to build from source, or run make build)", p, err)
				return
			}
			builtBinary.path = p
			return
		}
		root, err := repoRoot()
		if err != nil {
			builtBinary.err = err
			return
		}
		out := filepath.Join(root, ".cache", "itest", "idnow-connector")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./cmd/idnow-connector")
		cmd.Dir = root
		began := time.Now()
		if b, err := cmd.CombinedOutput(); err != nil {
			builtBinary.err = fmt.Errorf("go build ./cmd/idnow-connector (run make build to see why): %w\n%s", err, b)
			return
		}
		fmt.Fprintf(os.Stderr, "integration: built %s in %s\n", out, time.Since(began).Round(time.Millisecond))
		builtBinary.path = out
	})
	if builtBinary.err != nil {
		t.Fatalf("connector binary: %v", builtBinary.err)
	}
	return builtBinary.path
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago. Children need their
// ports before they start: the webhook audience is the ingress URL, and readiness is probed
// on the admin port.
//
// The kernel may hand the port it just released to the next bind, so two calls in a row can
// return the same address (measured here: 4 in 40 000 pairs); a port is therefore never handed
// out twice by one test binary.
func freeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		addr := ln.Addr().String()
		if err := ln.Close(); err != nil {
			t.Fatalf("release port %s: %v", addr, err)
		}
		handedOut.Lock()
		_, seen := handedOut.addrs[addr]
		handedOut.addrs[addr] = struct{}{}
		handedOut.Unlock()
		if !seen {
			return addr
		}
	}
	t.Fatal("find a free port: 100 ports in a row were ones already handed out")
	return ""
}

// handedOut is every address freeAddr returned in this test binary.
var handedOut = struct {
	sync.Mutex
	addrs map[string]struct{}
}{addrs: map[string]struct{}{}}

// settings is a child's configuration: connector keys (dotted, as in config.yaml) to values.
type settings map[string]string

// environ renders s as IDNOW_CONNECTOR_* variables on top of the test's environment, minus any
// IDNOW_CONNECTOR_* the developer happens to have set, so children see only the test's config.
func (s settings) environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			env = append(env, kv)
		}
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, envPrefix+strings.ToUpper(strings.ReplaceAll(k, ".", "__"))+"="+s[k])
	}
	return env
}

// with returns a copy of s with more overrides applied.
func (s settings) with(more settings) settings {
	out := make(settings, len(s)+len(more))
	for k, v := range s {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// child is a connector subcommand running as a process of the built binary.
type child struct {
	t       testing.TB
	name    string
	cmd     *exec.Cmd
	logPath string
	admin   string
	exited  chan struct{}
	waitErr error
}

// startChild runs `idnow-connector <mode>` with cfg (admin.listen must be set), waits until its
// /readyz answers 200 and returns it. The working directory is an empty temporary directory, so
// no config.yaml is picked up. Its stderr goes to a file that is printed when the test fails.
// The process is killed at cleanup if the test left it running.
func startChild(t testing.TB, name, mode string, cfg settings) *child {
	t.Helper()
	c := launchChild(t, name, mode, cfg)
	c.waitReady()
	return c
}

// launchChild starts the process without waiting for readiness.
func launchChild(t testing.TB, name, mode string, cfg settings) *child {
	t.Helper()
	admin := cfg["admin.listen"]
	if admin == "" {
		t.Fatalf("start %s: admin.listen is not set; the suite probes readiness there", name)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("start %s: create log file: %v", name, err)
	}
	cmd := exec.Command(connectorBinary(t), mode)
	cmd.Dir = dir
	cmd.Env = cfg.environ()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	c := &child{t: t, name: name, cmd: cmd, logPath: logPath, admin: admin, exited: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(c.exited)
	}()
	// Registered after t.TempDir, so it runs before the directory is removed.
	t.Cleanup(func() {
		if c.running() {
			_ = cmd.Process.Kill()
			<-c.exited
		}
		if t.Failed() {
			c.dumpLog()
		}
	})
	return c
}

// running reports whether the process has not exited yet.
func (c *child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// waitReady polls the child's /readyz until it answers 200, failing the test if the child
// exits first or readyTimeout passes.
func (c *child) waitReady() {
	c.t.Helper()
	began := time.Now()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + c.admin + "/readyz"
	last := "no answer yet"
	for {
		resp, err := client.Get(url)
		if err == nil {
			var body bytes.Buffer
			_, _ = body.ReadFrom(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				c.t.Logf("%s (pid %d) ready after %s", c.name, c.cmd.Process.Pid, time.Since(began).Round(time.Millisecond))
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(body.String()))
		} else {
			last = err.Error()
		}
		select {
		case <-c.exited:
			c.t.Fatalf("%s exited before it was ready (%v); last /readyz: %s", c.name, c.waitErr, last)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(began) > readyTimeout {
			c.t.Fatalf("%s not ready after %s; last /readyz: %s", c.name, readyTimeout, last)
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone: a crash, nothing runs on the way out.
func (c *child) kill() {
	c.t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatalf("SIGKILL %s: %v", c.name, err)
	}
	<-c.exited
	c.t.Logf("%s (pid %d) killed", c.name, c.cmd.Process.Pid)
}

// stop sends SIGTERM and requires a clean exit (status 0) within stopTimeout.
func (c *child) stop() {
	c.t.Helper()
	if !c.running() {
		c.t.Fatalf("%s exited on its own before the test stopped it: %v", c.name, c.waitErr)
	}
	began := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		c.t.Fatalf("SIGTERM %s: %v", c.name, err)
	}
	select {
	case <-c.exited:
	case <-time.After(stopTimeout):
		c.t.Fatalf("%s did not stop within %s of SIGTERM", c.name, stopTimeout)
	}
	if c.waitErr != nil {
		c.t.Fatalf("%s did not stop cleanly on SIGTERM: %v", c.name, c.waitErr)
	}
	c.t.Logf("%s stopped cleanly in %s", c.name, time.Since(began).Round(time.Millisecond))
}

// dumpLog prints the last lines of the child's output to the test log.
func (c *child) dumpLog() {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		c.t.Logf("%s log: %v", c.name, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	c.t.Logf("last %d lines of %s's output (%s):\n%s", len(lines), c.name, c.logPath, strings.Join(lines, "\n"))
}
