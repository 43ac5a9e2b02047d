// Package logging is the slog setup both binaries share: Istio's
// --log_output_level (per-scope levels, e.g. default:info,sds:debug) and
// --log_as_json, on top of slog's text and JSON handlers. Libraries tag their
// logger with logger.With("scope", "<scope>") and know nothing of this package.
package logging

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
)

// ScopeKey is the attribute that names a logger's scope.
const ScopeKey = "scope"

// DefaultScope is the scope of loggers that set none.
const DefaultScope = "default"

// AllScopes in --log_output_level sets every scope at once (all:debug), as in Istio.
const AllScopes = "all"

// LevelNone silences a scope: above every level a record can have.
const LevelNone = slog.Level(1 << 30)

// levelFatal is Istio's fatal: only records above error, i.e. almost nothing.
const levelFatal = slog.LevelError + 4

var levelNames = map[string]slog.Level{
	"debug":   slog.LevelDebug,
	"info":    slog.LevelInfo,
	"warn":    slog.LevelWarn,
	"warning": slog.LevelWarn,
	"error":   slog.LevelError,
	"fatal":   levelFatal,
	"none":    LevelNone,
}

// AllowedLevels is quoted in error messages.
const AllowedLevels = "debug, info, warn, error, fatal, none"

// Levels is a parsed --log_output_level: a level per scope, the default for
// scopes not listed.
type Levels struct {
	Default slog.Level
	Scopes  map[string]slog.Level
}

// For returns the minimum level of a scope. Scopes not named follow the
// default scope, so `--log_output_level=debug` turns every scope to debug.
func (l Levels) For(scope string) slog.Level {
	if lv, ok := l.Scopes[scope]; ok {
		return lv
	}
	return l.Default
}

// ParseLevels reads Istio's syntax: comma-separated `<scope>:<level>` items; a
// bare level applies to the default scope; `all:<level>` applies to every
// scope, and items after it still override single scopes.
func ParseLevels(s string) (Levels, error) {
	l := Levels{Default: slog.LevelInfo, Scopes: map[string]slog.Level{}}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		scope, name, ok := strings.Cut(item, ":")
		if !ok {
			scope, name = DefaultScope, item
		}
		scope, name = strings.TrimSpace(scope), strings.ToLower(strings.TrimSpace(name))
		if scope == "" {
			return Levels{}, fmt.Errorf("--log_output_level=%q: item %q has no scope before ':' (use <scope>:<level>, e.g. sds:debug)", s, item)
		}
		lv, known := levelNames[name]
		if !known {
			return Levels{}, fmt.Errorf("--log_output_level=%q: scope %s has unknown level %q (allowed: %s)", s, scope, name, AllowedLevels)
		}
		switch scope {
		case AllScopes:
			l.Default = lv
			for k := range l.Scopes {
				l.Scopes[k] = lv
			}
		case DefaultScope:
			l.Default = lv
		default:
			l.Scopes[scope] = lv
		}
	}
	return l, nil
}

// String renders the levels back in flag syntax, default first.
func (l Levels) String() string {
	parts := []string{DefaultScope + ":" + levelName(l.Default)}
	scopes := make([]string, 0, len(l.Scopes))
	for s := range l.Scopes {
		scopes = append(scopes, s)
	}
	sort.Strings(scopes)
	for _, s := range scopes {
		parts = append(parts, s+":"+levelName(l.Scopes[s]))
	}
	return strings.Join(parts, ",")
}

func levelName(lv slog.Level) string {
	switch lv {
	case LevelNone:
		return "none"
	case levelFatal:
		return "fatal"
	case slog.LevelWarn:
		return "warn"
	}
	return strings.ToLower(lv.String())
}
