// Package ca is istiod-lite's certificate authority (Istio's "Citadel" role).
//
// An Authority owns the key material: a self-signed root generated on first
// start, or plugged-in intermediate CA files, both kept in Istio's cacerts
// layout so that the same directory works with Istio. A Server exposes the
// Authority as istio.v1.auth.IstioCertificateService/CreateCertificate, with
// callers authenticated by the authn package and CSRs checked by ParseCSR.
package ca
