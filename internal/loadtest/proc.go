package loadtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ServeArg is the first argument that makes the benchmark binary a child target: the runner
// starts `<its own executable> serve-target <TargetSpec JSON>`.
const ServeArg = "serve-target"

// Child is a target running in its own process, so its memory is its own.
type Child struct {
	cmd  *exec.Cmd
	URL  string // the webhook URL the child serves (empty for the enricher)
	done chan error
	logs *tailBuffer

	mu      sync.Mutex
	samples []int64 // VmRSS in KiB, sampled every 250 ms
	stop    chan struct{}
}

// StartChild starts exe as a child serving spec and waits (at most timeout) for its READY line.
func StartChild(exe string, spec TargetSpec, timeout time.Duration) (*Child, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode target spec: %w", err)
	}
	cmd := exec.Command(exe, ServeArg, string(b))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("child stdout: %w", err)
	}
	c := &Child{cmd: cmd, done: make(chan error, 1), logs: &tailBuffer{max: 16 << 10}, stop: make(chan struct{})}
	cmd.Stderr = c.logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s child: %w", spec.Kind, err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, readyPrefix) {
				select {
				case ready <- strings.TrimSpace(strings.TrimPrefix(line, readyPrefix)):
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { c.done <- cmd.Wait() }()
	select {
	case c.URL = <-ready:
	case err := <-c.done:
		return nil, fmt.Errorf("%s child exited before it was ready: %w\n%s", spec.Kind, err, c.logs.String())
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-c.done
		return nil, fmt.Errorf("%s child not ready within %s\n%s", spec.Kind, timeout, c.logs.String())
	}
	go c.sample()
	return c, nil
}

// sample records the child's resident set every 250 ms, for the growth check.
func (c *Child) sample() {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if rss, err := c.statusKiB("VmRSS"); err == nil {
				c.mu.Lock()
				c.samples = append(c.samples, rss)
				c.mu.Unlock()
			}
		}
	}
}

// RSSSamples returns the VmRSS samples (KiB) taken so far and clears them.
func (c *Child) RSSSamples() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.samples
	c.samples = nil
	return s
}

// PeakRSS returns the child's peak resident set size (VmHWM) in bytes.
func (c *Child) PeakRSS() (int64, error) {
	kib, err := c.statusKiB("VmHWM")
	return kib << 10, err
}

// RSS returns the child's current resident set size in bytes.
func (c *Child) RSS() (int64, error) {
	kib, err := c.statusKiB("VmRSS")
	return kib << 10, err
}

// Pid is the child's process id, for profiling it by hand.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

func (c *Child) statusKiB(field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read child status: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, c.cmd.Process.Pid)
}

// Stop asks the child to shut down (SIGTERM), waits up to timeout, then kills it.
func (c *Child) Stop(timeout time.Duration) error {
	close(c.stop)
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			return fmt.Errorf("wait for child: %w", err)
		}
		if err != nil {
			return fmt.Errorf("child exited with %w\n%s", err, c.logs.String())
		}
		return nil
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.done
		return fmt.Errorf("child did not stop within %s; killed\n%s", timeout, c.logs.String())
	}
}

// Logs returns the tail of the child's stderr.
func (c *Child) Logs() string { return c.logs.String() }

// tailBuffer keeps the last max bytes written to it: enough of a child's log to explain a
// failure without holding a long run's log in memory.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = bytes.Clone(t.buf[over:])
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
