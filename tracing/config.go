package tracing

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// Protocols for the OTLP trace exporter.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Config says whether and where spans go. Metrics do not depend on it: they
// are always collected and served by [Provider.MetricsHandler].
type Config struct {
	// Enabled turns span export on. Off, the tracer is a no-op and the
	// session helpers cost one interface call at session start and end.
	Enabled bool
	// Endpoint of the OTLP receiver: "host:port" or a URL
	// ("http://host:4318", "https://collector:4317"). An http:// URL means
	// plaintext. For http/protobuf a URL with a path is used as is, without a
	// path "/v1/traces" is appended. Empty: the exporter's own handling of
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT, else
	// its default (localhost:4317 for grpc, localhost:4318 for http).
	Endpoint string
	// Protocol is "grpc" (default) or "http/protobuf".
	Protocol string
	// Insecure forces plaintext. False leaves the choice to the endpoint's
	// scheme and OTEL_EXPORTER_OTLP_INSECURE.
	Insecure bool
	// SampleRatio of new traces kept, 0..1 (default 1). A traceparent from the
	// viewer decides for its own trace (parent-based sampling).
	SampleRatio float64
	// Resource: service.name (default "vncedge"), service.version,
	// service.instance.id (default the host name).
	ServiceName, ServiceVersion, InstanceID string
	// Logger, if set, receives the SDK's export errors (otherwise they go
	// to the standard log package). It sets OTel's global error handler.
	Logger *slog.Logger
}

// DefaultConfig is the configuration before env and flags: tracing off,
// grpc, every trace sampled, service name "vncedge".
func DefaultConfig() Config {
	return Config{Protocol: ProtocolGRPC, SampleRatio: 1, ServiceName: "vncedge"}
}

// FromEnv overwrites the fields for which standard OpenTelemetry variables
// are set, so that the intended order is: defaults, then env, then flags
// (use the fields as flag defaults after calling FromEnv).
//
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT set:
//     Enabled. The endpoint itself is left to the exporter, which reads
//     these (and _HEADERS, _CERTIFICATE, _TIMEOUT, _COMPRESSION, _INSECURE)
//     with the per-signal semantics of the spec; Endpoint stays empty.
//   - OTEL_TRACES_EXPORTER=otlp enables, =none disables; OTEL_SDK_DISABLED=true
//     disables.
//   - OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / OTEL_EXPORTER_OTLP_PROTOCOL →
//     Protocol ("http/json" is not supported and maps to http/protobuf).
//   - OTEL_EXPORTER_OTLP_TRACES_INSECURE / OTEL_EXPORTER_OTLP_INSECURE → Insecure.
//   - OTEL_TRACES_SAMPLER_ARG (with OTEL_TRACES_SAMPLER unset or
//     [parentbased_]traceidratio) → SampleRatio; always_off → 0,
//     always_on → 1.
//   - OTEL_SERVICE_NAME → ServiceName. OTEL_RESOURCE_ATTRIBUTES is read when
//     the resource is built; explicit fields win over it.
func (c *Config) FromEnv() {
	if env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") != "" {
		c.Enabled = true
	}
	switch strings.ToLower(os.Getenv("OTEL_TRACES_EXPORTER")) {
	case "otlp":
		c.Enabled = true
	case "none":
		c.Enabled = false
	}
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		c.Enabled = false
	}
	switch p := strings.ToLower(env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")); p {
	case "":
	case ProtocolGRPC:
		c.Protocol = ProtocolGRPC
	default:
		c.Protocol = ProtocolHTTP
	}
	if v := env("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"); v != "" {
		c.Insecure = strings.EqualFold(v, "true")
	}
	switch strings.ToLower(os.Getenv("OTEL_TRACES_SAMPLER")) {
	case "always_off", "parentbased_always_off":
		c.SampleRatio = 0
	case "always_on", "parentbased_always_on":
		c.SampleRatio = 1
	case "", "traceidratio", "parentbased_traceidratio":
		if f, err := strconv.ParseFloat(os.Getenv("OTEL_TRACES_SAMPLER_ARG"), 64); err == nil && f >= 0 && f <= 1 {
			c.SampleRatio = f
		}
	}
	if v := os.Getenv("OTEL_SERVICE_NAME"); v != "" {
		c.ServiceName = v
	}
}

// env returns the first non-empty variable of names.
func env(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}
