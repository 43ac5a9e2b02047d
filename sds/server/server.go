// Package server is the agent's SDS server: it serves the workload
// certificate (`default`) and the trust bundle (`ROOTCA`) to Envoy over a unix
// socket, on go-control-plane's xDS server with a linear cache so that only
// the streams watching a resource are pushed when it changes.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/meshlite/meshlite/sds/secret"
	"google.golang.org/grpc"
)

// DefaultSocketPath is where Istio's Envoy bootstrap looks for SDS.
const DefaultSocketPath = "./var/run/secrets/workload-spiffe-uds/socket"

// Options configures a Server.
type Options struct {
	// SocketPath defaults to DefaultSocketPath.
	SocketPath string
	// Source provides the certificates. Required.
	Source secret.Source
	Logger *slog.Logger
}

// Server serves SDS. Create it with New, then Run it.
type Server struct {
	opts  Options
	log   *slog.Logger
	cache *cachev3.LinearCache
	acks  *ackTracker
}

// New validates opts.
func New(opts Options) (*Server, error) {
	if opts.Source == nil {
		return nil, errors.New("sds server: no certificate source")
	}
	if opts.SocketPath == "" {
		opts.SocketPath = DefaultSocketPath
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	log := opts.Logger.With("scope", "sds")
	return &Server{
		opts:  opts,
		log:   log,
		cache: cachev3.NewLinearCache(resourcev3.SecretType, cachev3.WithVersionPrefix(versionPrefix), cachev3.WithLogger(quietLogger{log})),
		acks:  newACKTracker(opts.Source, log),
	}, nil
}

// Run listens on the socket and serves until ctx is done, then removes the
// socket. It fails at once if the socket cannot be created or another live
// agent owns it.
func (s *Server) Run(ctx context.Context) error {
	l, fi, err := listenUnix(s.opts.SocketPath, s.log)
	if err != nil {
		return err
	}
	defer removeIfOurs(s.opts.SocketPath, fi)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, name := range []string{secret.ResourceDefault, secret.ResourceRoot} {
		ch, unsub := s.opts.Source.Subscribe(name)
		s.publish(name) // the value may predate the subscription
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer unsub()
			for {
				select {
				case <-ctx.Done():
					return
				case <-ch:
					s.publish(name)
				}
			}
		}()
	}
	defer wg.Wait()

	g := grpc.NewServer()
	xds := serverv3.NewServer(ctx, waitingCache{s.cache}, s.acks.callbacks())
	secretservice.RegisterSecretDiscoveryServiceServer(g, xds)
	s.log.Info("SDS server listening", "socket", s.opts.SocketPath)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(l) }()
	select {
	case <-ctx.Done():
		// SDS streams never end on their own, so a graceful stop would hang.
		g.Stop()
		<-errc
		return nil
	case err := <-errc:
		return fmt.Errorf("SDS server on %s: %w", s.opts.SocketPath, err)
	}
}

// publish copies the source's current value of name into the xDS cache, which
// pushes it to exactly the streams subscribed to that name.
func (s *Server) publish(name string) {
	var err error
	switch name {
	case secret.ResourceDefault:
		if w := s.opts.Source.Workload(); w != nil {
			err = s.cache.UpdateResource(name, workloadSecret(w))
		}
	case secret.ResourceRoot:
		if b := s.opts.Source.Bundle(); b != nil {
			err = s.cache.UpdateResource(name, rootSecret(b))
		}
	}
	if err != nil {
		s.log.Error("cannot publish secret", "resource", name, "err", err)
	}
}

// SocketPath is where the server listens.
func (s *Server) SocketPath() string { return s.opts.SocketPath }
