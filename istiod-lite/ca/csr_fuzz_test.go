package ca_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/meshlite/meshlite/istiod-lite/ca"
)

// FuzzCreateCertificate feeds arbitrary CSRs and lifetimes to the CA's
// CreateCertificate, as an authenticated caller (default/app) would send
// them, and checks the CA's promises rather than only "no panic":
//   - a refusal is InvalidArgument (naming the csr or validity_duration
//     field) or PermissionDenied (naming the refused SAN), never Internal;
//   - ParseCSR and CreateCertificate agree: a CSR ParseCSR refuses is refused
//     as InvalidArgument, whatever the lifetime;
//   - an issued certificate carries exactly the caller's SPIFFE ID and no
//     other name, certifies the CSR's key, chains to the CA's root and lives
//     exactly the requested (or default) lifetime plus the clock-skew backdate;
//   - an accepted CSR re-encoded as PEM parses to the same request.
//
// Seeds in testdata/fuzz/FuzzCreateCertificate cover every refusal reason.
func FuzzCreateCertificate(f *testing.F) {
	clk := newClock()
	a, err := ca.New(ca.Options{Dir: f.TempDir(), Clock: clk, Logger: discardLogger()})
	if err != nil {
		f.Fatal(err)
	}
	const defaultTTL, maxTTL = 24 * time.Hour, 90 * 24 * time.Hour
	s, err := ca.NewServer(a, ca.ServerOptions{
		Authenticator: staticAuthn{id: appID}, WorkloadCertTTL: defaultTTL, MaxWorkloadCertTTL: maxTTL,
		Clock: clk, Logger: discardLogger(),
	})
	if err != nil {
		f.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.SigningRoot())

	f.Fuzz(func(t *testing.T, csrPEM string, validity int64) {
		parsed, parseErr := ca.ParseCSR(csrPEM)
		if parseErr != nil {
			re, ok := parseErr.(*ca.RequestError)
			if !ok {
				t.Fatalf("ParseCSR returned %T, want *ca.RequestError: %v", parseErr, parseErr)
			}
			if re.Code != codes.InvalidArgument || re.Reason == "" || !strings.HasPrefix(re.Msg, "csr ") {
				t.Fatalf("ParseCSR refusal %+v: want InvalidArgument, a reason and a message naming the csr field", re)
			}
		} else {
			if err := parsed.CheckSignature(); err != nil {
				t.Fatalf("ParseCSR accepted a CSR whose signature does not verify: %v", err)
			}
			if len(parsed.URIs)+len(parsed.DNSNames)+len(parsed.IPAddresses)+len(parsed.EmailAddresses) == 0 {
				t.Fatalf("ParseCSR accepted a CSR without a SAN")
			}
			again, err := ca.ParseCSR(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: parsed.Raw})))
			if err != nil || !reflect.DeepEqual(again.Raw, parsed.Raw) {
				t.Fatalf("accepted CSR does not round-trip through PEM: %v", err)
			}
		}

		resp, err := s.CreateCertificate(context.Background(), &pb.IstioCertificateRequest{Csr: csrPEM, ValidityDuration: validity})
		if err != nil {
			st := status.Convert(err)
			t.Logf("refused: %s: %s", st.Code(), st.Message())
			if strings.TrimSpace(st.Message()) == "" {
				t.Fatalf("refusal %s without a message", st.Code())
			}
			switch st.Code() {
			case codes.InvalidArgument:
				if !strings.HasPrefix(st.Message(), "csr ") && !strings.HasPrefix(st.Message(), "validity_duration ") {
					t.Fatalf("InvalidArgument does not name the csr or validity_duration field: %q", st.Message())
				}
			case codes.PermissionDenied:
				if !strings.HasPrefix(st.Message(), "SAN ") || !strings.Contains(st.Message(), appID.String()) {
					t.Fatalf("PermissionDenied does not name the SAN and the caller's identity: %q", st.Message())
				}
				if parseErr != nil {
					t.Fatalf("CSR refused by ParseCSR (%v) got PermissionDenied instead of InvalidArgument", parseErr)
				}
			default:
				t.Fatalf("unexpected refusal code %s: %s", st.Code(), st.Message())
			}
			return
		}
		if parseErr != nil {
			t.Fatalf("CreateCertificate signed a CSR that ParseCSR refuses (%v)", parseErr)
		}
		if validity < 0 || time.Duration(validity) > maxTTL/time.Second {
			t.Fatalf("CreateCertificate accepted validity_duration %d outside 0..%d", validity, int64(maxTTL/time.Second))
		}
		if len(resp.GetCertChain()) < 2 {
			t.Fatalf("cert_chain has %d elements, want the leaf and the root", len(resp.GetCertChain()))
		}
		certs, err := ca.ParseCertsPEM([]byte(resp.GetCertChain()[0]))
		if err != nil || len(certs) != 1 {
			t.Fatalf("cert_chain[0] is not one PEM certificate: %v", err)
		}
		leaf := certs[0]
		t.Logf("issued %s until %s", leaf.URIs, leaf.NotAfter)
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != appID.String() || len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
			t.Fatalf("leaf names URIs %v DNS %v IPs %v emails %v, want only %s", leaf.URIs, leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses, appID)
		}
		if !reflect.DeepEqual(leaf.PublicKey, parsed.PublicKey) {
			t.Fatalf("leaf certifies a different key than the CSR's")
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: clk.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("leaf does not chain to the CA root: %v", err)
		}
		want := defaultTTL
		if validity > 0 {
			want = time.Duration(validity) * time.Second
		}
		if got := leaf.NotAfter.Sub(leaf.NotBefore); got != want+ca.DefaultClockSkew {
			t.Fatalf("leaf lives %s, want %s plus the %s backdate", got, want, ca.DefaultClockSkew)
		}
	})
}
