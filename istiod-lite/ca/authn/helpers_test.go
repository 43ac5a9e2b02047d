package authn

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
)

func parsePKCS8(data []byte) (any, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New("no PEM")
	}
	return x509.ParsePKCS8PrivateKey(b.Bytes)
}
