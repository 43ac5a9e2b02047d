// Package cli holds what both mains share: the root command and exit-status plumbing.
package cli

import "errors"

// ExitError lets a subcommand choose its process exit status (for example
// `wait` timing out, or `check` finding an invalid config) while main stays the
// only place that calls os.Exit.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// WithExitCode wraps err so that main exits with code.
func WithExitCode(code int, err error) error { return &ExitError{Code: code, Err: err} }

// ExitCode is the status main exits with for err: the one chosen by WithExitCode, else 1.
func ExitCode(err error) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}
