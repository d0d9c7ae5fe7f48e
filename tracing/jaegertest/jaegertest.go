// Package jaegertest runs a real Jaeger v2 (all in memory, all on
// 127.0.0.1, free ports) for tests, and reads traces back from its query API.
//
// The binary comes from, in order:
//  1. $VNCEDGE_JAEGER_BIN;
//  2. the go tool cache: the tools module tracing/jaegertool declares
//     `tool github.com/jaegertracing/jaeger/cmd/jaeger`, and
//     `go -C tracing/jaegertool tool -n jaeger` prints the cached binary's
//     path. That command builds on a cache miss (3–4 min cold), so it is
//     run only when the cache already holds a jaeger tool binary, or when
//     VNCEDGE_REQUIRE_REAL=1 (make test), which accepts the build;
//  3. otherwise the test is skipped with a message naming the missing
//     binary and how to build it (`make jaeger`).
package jaegertest

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

//go:embed config.yaml.tmpl
var configTemplate string

// Env variables.
const (
	EnvBin         = "VNCEDGE_JAEGER_BIN"
	EnvRequireReal = "VNCEDGE_REQUIRE_REAL"
)

// Jaeger is a running Jaeger; it is stopped by the test's cleanup.
type Jaeger struct {
	OTLPGRPC string // host:port of the OTLP/gRPC receiver
	OTLPHTTP string // host:port of the OTLP/HTTP receiver (path /v1/traces)
	QueryURL string // http://host:port of the query API and UI
	Health   string // host:port of the health check

	cmd  *exec.Cmd
	logf string
}

type ports struct{ Health, QueryHTTP, QueryGRPC, OTLPGRPC, OTLPHTTP int }

// Start finds (or, under VNCEDGE_REQUIRE_REAL=1, builds) the Jaeger binary,
// starts it and waits until it is healthy. It skips the test when the binary
// is missing and not required.
func Start(t testing.TB) *Jaeger {
	t.Helper()
	bin, err := Binary(t)
	if err != nil {
		var miss *MissingError
		if errors.As(err, &miss) && os.Getenv(EnvRequireReal) != "1" {
			t.Skip(err.Error())
		}
		t.Fatal(err)
	}
	var p ports
	if err := freePorts(&p.Health, &p.QueryHTTP, &p.QueryGRPC, &p.OTLPGRPC, &p.OTLPHTTP); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "jaeger.yaml")
	var cfg bytes.Buffer
	if err := template.Must(template.New("cfg").Option("missingkey=error").Parse(configTemplate)).Execute(&cfg, p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	j := &Jaeger{
		OTLPGRPC: addr(p.OTLPGRPC),
		OTLPHTTP: addr(p.OTLPHTTP),
		QueryURL: "http://" + addr(p.QueryHTTP),
		Health:   addr(p.Health),
		logf:     filepath.Join(dir, "jaeger.log"),
	}
	logFile, err := os.Create(j.logf)
	if err != nil {
		t.Fatal(err)
	}
	j.cmd = exec.Command(bin, "--config=file:"+cfgPath)
	j.cmd.Stdout, j.cmd.Stderr = logFile, logFile
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := j.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- j.cmd.Wait(); logFile.Close() }()
	t.Cleanup(func() {
		_ = j.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = j.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("jaeger log (tail):\n%s", j.LogTail(4000))
		}
	})
	if err := j.waitHealthy(exited, 90*time.Second); err != nil {
		t.Fatalf("jaeger did not become healthy: %v\nlog:\n%s", err, j.LogTail(4000))
	}
	t.Logf("jaeger %s: otlp grpc %s, otlp http %s, query %s", bin, j.OTLPGRPC, j.OTLPHTTP, j.QueryURL)
	return j
}

// LogTail returns the last n bytes of Jaeger's output.
func (j *Jaeger) LogTail(n int) string {
	b, _ := os.ReadFile(j.logf)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (j *Jaeger) waitHealthy(exited <-chan error, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("jaeger exited: %v", err)
		default:
		}
		last = j.ping()
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return last
}

func (j *Jaeger) ping() error {
	for _, u := range []string{"http://" + j.Health + "/status", j.QueryURL + "/api/services"} {
		resp, err := http.Get(u)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", u, resp.Status)
		}
	}
	// The OTLP receivers must accept connections too.
	for _, a := range []string{j.OTLPGRPC, j.OTLPHTTP} {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			return err
		}
		c.Close()
	}
	return nil
}

// Trace is one trace of the query API (/api/traces, Jaeger's JSON model).
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span is one span of a Trace. Times are in microseconds.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"`
	Duration      int64       `json:"duration"`
	Tags          []KeyValue  `json:"tags"`
	Logs          []Log       `json:"logs"`
	ProcessID     string      `json:"processID"`
}

// Reference links a span to its parent (refType CHILD_OF).
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a tag: Type is string, bool, int64, float64 or binary.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Log is a span event.
type Log struct {
	Timestamp int64      `json:"timestamp"`
	Fields    []KeyValue `json:"fields"`
}

// Process is the resource of the spans that name it.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Span returns the first span named op, or nil.
func (t *Trace) Span(op string) *Span {
	for i := range t.Spans {
		if t.Spans[i].OperationName == op {
			return &t.Spans[i]
		}
	}
	return nil
}

// Tag returns the value of tag key (JSON-decoded: string, bool, float64).
func (s *Span) Tag(key string) (any, bool) { return tag(s.Tags, key) }

// TagString returns tag key formatted as text ("" if absent); numbers print
// as integers when they are integral.
func (s *Span) TagString(key string) string {
	v, ok := s.Tag(key)
	if !ok {
		return ""
	}
	if f, ok := v.(float64); ok && f == float64(int64(f)) {
		return strconv.FormatInt(int64(f), 10)
	}
	return fmt.Sprint(v)
}

// ParentID is the span id of the CHILD_OF reference, "" for a root span.
func (s *Span) ParentID() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func tag(kvs []KeyValue, key string) (any, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Traces polls /api/traces?service=service until it returns at least one
// trace (10 s deadline).
func (j *Jaeger) Traces(service string) ([]Trace, error) {
	return j.TracesWhere(service, 10*time.Second, func(ts []Trace) bool { return len(ts) > 0 })
}

// TracesWhere polls /api/traces?service=service until ok accepts the
// result or timeout passes; then it returns the last result and an error.
func (j *Jaeger) TracesWhere(service string, timeout time.Duration, ok func([]Trace) bool) ([]Trace, error) {
	q := url.Values{"service": {service}, "limit": {"1000"}, "lookback": {"1h"}}
	return j.poll(j.QueryURL+"/api/traces?"+q.Encode(), timeout, ok)
}

// Trace polls /api/traces/{id} until the trace has at least minSpans spans
// (10 s deadline).
func (j *Jaeger) Trace(traceID string, minSpans int) (*Trace, error) {
	ts, err := j.poll(j.QueryURL+"/api/traces/"+url.PathEscape(traceID), 10*time.Second, func(ts []Trace) bool {
		return len(ts) > 0 && len(ts[0].Spans) >= minSpans
	})
	if len(ts) == 0 {
		if err == nil {
			err = errors.New("no trace")
		}
		return nil, err
	}
	return &ts[0], err
}

func (j *Jaeger) poll(u string, timeout time.Duration, ok func([]Trace) bool) ([]Trace, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var (
		last    []Trace
		lastErr error
	)
	for {
		ts, err := get(ctx, u)
		if err == nil {
			last, lastErr = ts, nil
			if ok(ts) {
				return ts, nil
			}
		} else if ctx.Err() == nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = fmt.Errorf("GET %s: condition not met after %v (%d traces)", u, timeout, len(last))
			}
			return last, lastErr
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func get(ctx context.Context, u string) ([]Trace, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil // trace not (yet) there
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %.300s", u, resp.Status, body)
	}
	var r struct {
		Data []Trace `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return r.Data, nil
}

// MissingError says the Jaeger binary is not available and how to get it.
type MissingError struct{ Reason string }

func (e *MissingError) Error() string {
	return "jaeger binary missing: " + e.Reason +
		"; build it with `make jaeger` (go -C tracing/jaegertool tool -n jaeger, 3–4 min cold)," +
		" set " + EnvBin + "=/path/to/jaeger, or set " + EnvRequireReal + "=1 to build it here"
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Binary returns the path of the Jaeger binary (see the package doc). The
// result is remembered for the process.
func Binary(t testing.TB) (string, error) {
	binOnce.Do(func() { binPath, binErr = findBinary(t) })
	return binPath, binErr
}

func findBinary(t testing.TB) (string, error) {
	if p := os.Getenv(EnvBin); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBin, p, err)
		}
		return p, nil
	}
	toolDir, err := ToolDir()
	if err != nil {
		return "", &MissingError{Reason: err.Error()}
	}
	require := os.Getenv(EnvRequireReal) == "1"
	if !require && !toolCached() {
		return "", &MissingError{Reason: "no jaeger in the go tool cache"}
	}
	// A cache hit answers in seconds; a stale cache entry (another version)
	// would start a build, which only make test (require) waits for.
	timeout := 2 * time.Minute
	if require {
		timeout = 15 * time.Minute
		t.Logf("jaegertest: go -C %s tool -n jaeger (a cold build takes 3–4 minutes)", toolDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "-C", toolDir, "tool", "-n", "jaeger")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", &MissingError{Reason: fmt.Sprintf("go tool -n jaeger: %v: %s", err, strings.TrimSpace(stderr.String()))}
	}
	p := strings.TrimSpace(string(out))
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		return "", &MissingError{Reason: fmt.Sprintf("go tool -n jaeger printed %q", p)}
	}
	return p, nil
}

// toolCached reports whether the go build cache holds a jaeger tool binary
// of any version. go tool (Go 1.24+) keeps built tools as cached
// executables: $GOCACHE/xx/<action id>-d/jaeger.
func toolCached() bool {
	out, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		return false
	}
	m, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "*", "*-d", "jaeger"))
	return len(m) > 0
}

// ToolDir is the directory of the jaeger tools module: tracing/jaegertool
// under the vncedge module root (found with go env GOMOD from the test's
// working directory).
func ToolDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the vncedge module")
	}
	dir := filepath.Join(filepath.Dir(gomod), "tracing", "jaegertool")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", err
	}
	return dir, nil
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// freePorts picks distinct free ports on 127.0.0.1, holding each listener
// until all are chosen so that none repeats.
func freePorts(ps ...*int) error {
	ls := make([]net.Listener, 0, len(ps))
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for _, p := range ps {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
		*p = l.Addr().(*net.TCPAddr).Port
	}
	return nil
}
