package xdsproxy

import (
	"context"

	"google.golang.org/grpc"
)

// upstreamStream is the client end of either ADS stream.
type upstreamStream[Req, Resp any] interface {
	Send(Req) error
	Recv() (Resp, error)
}

// protocol is what state-of-the-world and delta ADS do differently during
// one upstream stream's life; pumpUpstream does the rest.
type protocol[Req, Resp any] interface {
	openUpstream(ctx context.Context, conn *grpc.ClientConn) (upstreamStream[Req, Resp], error)
	// onResponse records a response before it is relayed downstream.
	onResponse(Resp)
	sendDownstream(Resp) error
	// replay is what the new upstream stream is sent first: the
	// subscriptions Envoy made so far.
	replay() []Req
	// forward records a downstream request and says what, if anything, to
	// send upstream for it.
	forward(Req) (Req, bool)
	setConnected(bool)
}

// pumpUpstream opens one upstream stream on conn, replays the subscriptions
// and pumps both directions. It returns downErr when the downstream is gone
// (the stream must end) or upErr when the upstream failed (the caller
// reconnects).
func pumpUpstream[Req, Resp any](ctx context.Context, p *Proxy, conn *grpc.ClientConn, s protocol[Req, Resp], reqs <-chan Req, downRecvErr <-chan error) (downErr, upErr error) {
	uctx, cancel := context.WithCancel(ctx)
	up, err := s.openUpstream(uctx, conn)
	if err != nil {
		cancel()
		return nil, err
	}
	p.metrics.upstreamConnects.Inc()
	s.setConnected(true)
	defer s.setConnected(false)

	upErrs := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			resp, err := up.Recv()
			if err != nil {
				upErrs <- err
				return
			}
			s.onResponse(resp)
			if err := s.sendDownstream(resp); err != nil {
				upErrs <- errDownstream{err}
				return
			}
		}
	}()
	defer func() { cancel(); <-done }()

	for _, r := range s.replay() {
		if up.Send(r) != nil {
			break // the receive side reports why
		}
	}
	for {
		select {
		case r := <-reqs:
			if fwd, ok := s.forward(r); ok {
				_ = up.Send(fwd) // on failure the receive side reports why
			}
		case err := <-upErrs:
			if d, ok := err.(errDownstream); ok {
				return d, nil
			}
			return nil, err
		case err := <-downRecvErr:
			return err, nil
		case <-ctx.Done():
			return ctx.Err(), nil
		}
	}
}
