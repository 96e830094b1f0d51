package pluginhost

import (
	"github.com/hashicorp/go-hclog"
)

// pluginLogger is the logger go-plugin gets for one plugin process. It
// writes to herald's log with plugin=<name> once, and takes out what would
// repeat a key or a field the line already has:
//
//   - go-plugin adds "plugin"=<binary path> to its own lines ("plugin
//     process exited"): renamed "command";
//   - it forwards each JSON line the plugin's SDK logger writes with the
//     plugin's own "timestamp" and "@module" (its name): herald's log line
//     has its own time and names the plugin already, so both are dropped;
//   - a "plugin" key a plugin logs itself is renamed "plugin_value".
type pluginLogger struct {
	hclog.Logger
	name    string
	command string
}

func newPluginLogger(base hclog.Logger, name, command string) *pluginLogger {
	return &pluginLogger{Logger: base.With("plugin", name), name: name, command: command}
}

func (l *pluginLogger) clean(args []any) []any {
	out := make([]any, 0, len(args))
	for i := 0; i+1 < len(args); i += 2 {
		k, v := args[i], args[i+1]
		switch k {
		case "timestamp", "@module":
			continue
		case "plugin":
			if s, ok := v.(string); ok && s == l.command {
				k = "command"
			} else {
				k = "plugin_value"
			}
		}
		out = append(out, k, v)
	}
	if len(args)%2 == 1 {
		out = append(out, args[len(args)-1])
	}
	return out
}

func (l *pluginLogger) wrap(inner hclog.Logger) hclog.Logger {
	return &pluginLogger{Logger: inner, name: l.name, command: l.command}
}

func (l *pluginLogger) Log(level hclog.Level, msg string, args ...any) {
	l.Logger.Log(level, msg, l.clean(args)...)
}
func (l *pluginLogger) Trace(msg string, args ...any) { l.Logger.Trace(msg, l.clean(args)...) }
func (l *pluginLogger) Debug(msg string, args ...any) { l.Logger.Debug(msg, l.clean(args)...) }
func (l *pluginLogger) Info(msg string, args ...any)  { l.Logger.Info(msg, l.clean(args)...) }
func (l *pluginLogger) Warn(msg string, args ...any)  { l.Logger.Warn(msg, l.clean(args)...) }
func (l *pluginLogger) Error(msg string, args ...any) { l.Logger.Error(msg, l.clean(args)...) }

func (l *pluginLogger) With(args ...any) hclog.Logger { return l.wrap(l.Logger.With(l.clean(args)...)) }
func (l *pluginLogger) Named(name string) hclog.Logger {
	return l.wrap(l.Logger.Named(name))
}
func (l *pluginLogger) ResetNamed(name string) hclog.Logger {
	return l.wrap(l.Logger.ResetNamed(name))
}
