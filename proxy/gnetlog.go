package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
)

// gnetLogger routes gnet's own log lines through the server's slog logger,
// so that in JSON mode every line vncedge writes is JSON. gnet logs a
// handful of lines per engine start and stop, never per connection.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) log(level slog.Level, format string, args []any) {
	if !g.l.Enabled(context.Background(), level) {
		return
	}
	g.l.Log(context.Background(), level, fmt.Sprintf(format, args...), "component", "gnet")
}

func (g gnetLogger) Debugf(format string, args ...any) { g.log(slog.LevelDebug, format, args) }
func (g gnetLogger) Infof(format string, args ...any)  { g.log(slog.LevelDebug, format, args) } // engine chatter
func (g gnetLogger) Warnf(format string, args ...any)  { g.log(slog.LevelWarn, format, args) }
func (g gnetLogger) Errorf(format string, args ...any) { g.log(slog.LevelError, format, args) }

// Fatalf logs and exits, as gnet's default logger does (gnet calls it only
// when a kqueue wake-up pipe cannot be made).
func (g gnetLogger) Fatalf(format string, args ...any) {
	g.log(slog.LevelError, format, args)
	os.Exit(1)
}
