package server

import (
	"fmt"
	"log/slog"
)

// quietLogger routes go-control-plane's logging to slog. Its Info lines are
// per-watch chatter, so they go to Debug.
type quietLogger struct{ l *slog.Logger }

func (q quietLogger) Debugf(f string, a ...any) { q.l.Debug(fmt.Sprintf(f, a...)) }
func (q quietLogger) Infof(f string, a ...any)  { q.l.Debug(fmt.Sprintf(f, a...)) }
func (q quietLogger) Warnf(f string, a ...any)  { q.l.Warn(fmt.Sprintf(f, a...)) }
func (q quietLogger) Errorf(f string, a ...any) { q.l.Error(fmt.Sprintf(f, a...)) }
