package ca

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"
	"k8s.io/utils/clock"

	"github.com/meshlite/meshlite/istiod-lite/ca/authn"
	"github.com/meshlite/meshlite/sds/spiffe"
)

// Defaults of ServerOptions, as in Istio.
const (
	DefaultWorkloadCertTTL    = 24 * time.Hour
	DefaultMaxWorkloadCertTTL = 90 * 24 * time.Hour
)

// ServerOptions configure the CreateCertificate service.
type ServerOptions struct {
	// Authenticator finds the caller; usually an authn.Chain of authn.JWT
	// and authn.ClientCert.
	Authenticator authn.Authenticator
	// MaxWorkloadCertTTL (--maxWorkloadCertTTL): a request for longer is
	// refused with InvalidArgument; default 90 days.
	MaxWorkloadCertTTL time.Duration
	// WorkloadCertTTL is the lifetime when the request names none; default
	// 24 h, never more than MaxWorkloadCertTTL.
	WorkloadCertTTL time.Duration
	// Registerer receives the CA metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer
	Clock      clock.PassiveClock
	Logger     *slog.Logger
}

// Server implements istio.v1.auth.IstioCertificateService.
type Server struct {
	pb.UnimplementedIstioCertificateServiceServer
	ca      *Authority
	opts    ServerOptions
	log     *slog.Logger
	metrics *metrics
}

// NewServer returns the CA service for ca.
func NewServer(ca *Authority, opts ServerOptions) (*Server, error) {
	if ca == nil {
		return nil, errors.New("ca: NewServer needs an Authority")
	}
	if opts.Authenticator == nil {
		return nil, errors.New("ca: NewServer needs an Authenticator; configure --jwksFile/--jwtIssuer/--jwtAudience")
	}
	if opts.MaxWorkloadCertTTL <= 0 {
		opts.MaxWorkloadCertTTL = DefaultMaxWorkloadCertTTL
	}
	if opts.WorkloadCertTTL <= 0 {
		opts.WorkloadCertTTL = DefaultWorkloadCertTTL
	}
	opts.WorkloadCertTTL = min(opts.WorkloadCertTTL, opts.MaxWorkloadCertTTL)
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m, err := newMetrics(opts.Registerer, ca)
	if err != nil {
		return nil, fmt.Errorf("ca: registering metrics: %w", err)
	}
	return &Server{ca: ca, opts: opts, log: opts.Logger.With("scope", "ca"), metrics: m}, nil
}

// Register mounts the service on a gRPC server, next to ADS on :15012.
func (s *Server) Register(r grpc.ServiceRegistrar) { pb.RegisterIstioCertificateServiceServer(r, s) }

// CreateCertificate authenticates the caller, checks the CSR, authorizes
// every SAN against the caller's identity and signs.
func (s *Server) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	s.metrics.requests.Inc()
	cluster := clusterID(ctx, req)
	id, err := s.opts.Authenticator.Authenticate(ctx)
	if err != nil {
		return nil, s.deny(ctx, cluster, &RequestError{Code: codes.Unauthenticated, Reason: ReasonUnauthenticated,
			Msg: "authentication failed: " + err.Error()})
	}
	csr, err := ParseCSR(req.GetCsr())
	if err != nil {
		return nil, s.deny(ctx, cluster, err)
	}
	if err := authorize(id, csr.URIs, csr.DNSNames, csr.IPAddresses, csr.EmailAddresses); err != nil {
		return nil, s.deny(ctx, cluster, err)
	}
	ttl, err := s.ttl(req.GetValidityDuration())
	if err != nil {
		return nil, s.deny(ctx, cluster, err)
	}
	start := time.Now() // wall time, not the injected clock: this is a latency
	// The leaf carries the authenticated identity itself, so duplicate or
	// differently spelt SANs in the CSR never reach a certificate.
	issued, err := s.ca.Sign(LeafRequest{PublicKey: csr.PublicKey, URIs: []*url.URL{id.URL()}, TTL: ttl})
	if err != nil {
		return nil, s.deny(ctx, cluster, &RequestError{Code: codes.Internal, Reason: ReasonSignError, Msg: err.Error()})
	}
	s.metrics.latency.Observe(time.Since(start).Seconds())
	s.metrics.issued.Inc()
	s.log.Info("issued certificate", "identity", id.String(), "serial", fmt.Sprintf("%x", issued.Leaf.SerialNumber),
		"notAfter", issued.Leaf.NotAfter.UTC(), "cluster", cluster, "peer", peerAddr(ctx))
	return &pb.IstioCertificateResponse{CertChain: issued.ChainPEM()}, nil
}

// ttl resolves the requested lifetime, refusing rather than silently
// shortening an explicit request above the maximum, as Istio does.
func (s *Server) ttl(seconds int64) (time.Duration, error) {
	switch {
	case seconds == 0:
		return s.opts.WorkloadCertTTL, nil
	case seconds < 0:
		return 0, invalid(ReasonTTL, "validity_duration %ds is negative: send 0 for the default of %s", seconds, s.opts.WorkloadCertTTL)
	case seconds > int64(s.opts.MaxWorkloadCertTTL/time.Second):
		return 0, invalid(ReasonTTL, "validity_duration %ds is above the maximum of %ds (--maxWorkloadCertTTL=%s): request a shorter lifetime",
			seconds, int64(s.opts.MaxWorkloadCertTTL/time.Second), s.opts.MaxWorkloadCertTTL)
	}
	return time.Duration(seconds) * time.Second, nil
}

// authorize lets a caller have only its own SPIFFE ID in a certificate.
func authorize(id spiffe.Identity, uris []*url.URL, dns []string, ips []net.IP, emails []string) error {
	want := id.String()
	refuse := func(san, why string) error {
		return &RequestError{Code: codes.PermissionDenied, Reason: ReasonForbiddenSAN,
			Msg: fmt.Sprintf("SAN %s is refused: %s; the caller is authenticated as %s and may only request that SPIFFE ID", san, why, want)}
	}
	for _, u := range uris {
		if got := u.String(); got != want {
			if _, err := spiffe.Parse(got); err != nil {
				return refuse("URI:"+got, "it is not a SPIFFE ID of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>")
			}
			return refuse("URI:"+got, "it is not the caller's identity")
		}
	}
	switch {
	case len(dns) > 0:
		return refuse("DNS:"+dns[0], "workload certificates carry only a SPIFFE ID, not DNS names")
	case len(ips) > 0:
		return refuse("IP:"+ips[0].String(), "workload certificates carry only a SPIFFE ID, not IP addresses")
	case len(emails) > 0:
		return refuse("email:"+emails[0], "workload certificates carry only a SPIFFE ID, not email addresses")
	}
	return nil
}

func (s *Server) deny(ctx context.Context, cluster string, err error) error {
	var re *RequestError
	if !errors.As(err, &re) {
		re = &RequestError{Code: codes.Internal, Reason: ReasonSignError, Msg: err.Error()}
	}
	s.metrics.denied.WithLabelValues(re.Reason).Inc()
	s.log.Info("denied certificate request", "code", re.Code.String(), "reason", re.Reason, "error", re.Msg,
		"cluster", cluster, "peer", peerAddr(ctx))
	return status.Error(re.Code, re.Msg)
}

// clusterID is the caller's cluster: the ClusterID header the Istio agent
// sends, else the ClusterID request metadata field.
func clusterID(ctx context.Context, req *pb.IstioCertificateRequest) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("clusterid"); len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	if f := req.GetMetadata().GetFields()["ClusterID"]; f != nil {
		return f.GetStringValue()
	}
	return ""
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}
