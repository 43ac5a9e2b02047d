package cache

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// PermanentError is a CA refusal that retrying cannot fix (bad credentials, an
// identity the CA will not sign, a malformed request). The cache stops
// retrying until Refresh is called.
type PermanentError struct {
	Code codes.Code
	Err  error
}

func (e *PermanentError) Error() string {
	return e.Err.Error() + " (not retried: fix the token, identity or CA configuration, then restart the agent)"
}

func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether err is a CA refusal that will not be retried.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// classify decides whether a Sign failure is worth retrying. Only transport and
// server-side transient codes are; a local error without a gRPC status (such
// as a chain that does not verify yet during a root rotation) is retried too.
func classify(err error) error {
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch s.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted,
		codes.Aborted, codes.Internal, codes.Unknown, codes.Canceled:
		return err
	}
	return &PermanentError{Code: s.Code(), Err: err}
}
