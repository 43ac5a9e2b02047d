package meshrun

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// CertInfo summarizes a workload's current certificate in OUTPUT_CERTS.
type CertInfo struct {
	ID       string // first URI SAN (the SPIFFE ID), "?" when unknown
	Serial   string
	NotAfter time.Time
}

// Expiry formats NotAfter for people ("?" when unknown).
func (c CertInfo) Expiry() string {
	if c.NotAfter.IsZero() {
		return "?"
	}
	return c.NotAfter.Local().Format("2006-01-02 15:04:05")
}

// Cert reads the workload's current leaf certificate.
func (m *Mesh) Cert(w Workload) CertInfo {
	info := CertInfo{ID: "?"}
	data, err := os.ReadFile(filepath.Join(m.WorkloadDir(w), CertsDir, "cert-chain.pem"))
	if err != nil {
		return info
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return info
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return info
	}
	if len(cert.URIs) > 0 {
		info.ID = cert.URIs[0].String()
	}
	info.Serial, info.NotAfter = cert.SerialNumber.String(), cert.NotAfter
	return info
}

var issuedSerial = regexp.MustCompile(`workload certificate issued.*?serial=("?)([0-9]+)`)

// IssuedSerials lists, in order, the serials of the certificates the
// workload's agent logged as issued (the first one and every rotation).
func (m *Mesh) IssuedSerials(w Workload) []string {
	data, err := os.ReadFile(m.LogPath(w.Name + "-agent"))
	if err != nil {
		return nil
	}
	var out []string
	for _, match := range issuedSerial.FindAllSubmatch(data, -1) {
		out = append(out, string(match[2]))
	}
	return out
}
