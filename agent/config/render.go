package config

import (
	"encoding/json"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"
	meshconfig "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"
)

// view is the printed shape of a Config: grouped as users think of it, with
// durations as strings and the protos in their YAML/JSON field names.
type view struct {
	ProxyType    ProxyType        `json:"proxyType"`
	Platform     Platform         `json:"platform"`
	Node         nodeView         `json:"node"`
	ControlPlane controlPlaneView `json:"controlPlane"`
	Secrets      secretsView      `json:"secrets"`
	Envoy        envoyView        `json:"envoy"`
	App          appView          `json:"app"`
	Paths        Paths            `json:"paths"`
	Capture      bool             `json:"capture"`
	DryRun       bool             `json:"dryRun"`
	ProxyConfig  json.RawMessage  `json:"proxyConfig"`
	Mesh         json.RawMessage  `json:"meshConfig"`
	Sources      []string         `json:"sources"`
}

type nodeView struct {
	ID             string         `json:"id"`
	PodName        string         `json:"podName"`
	PodNamespace   string         `json:"podNamespace"`
	InstanceIPs    []string       `json:"instanceIPs"`
	ServiceAccount string         `json:"serviceAccount"`
	SPIFFEID       string         `json:"spiffeID"`
	TrustDomain    string         `json:"trustDomain"`
	Domain         string         `json:"domain"`
	ClusterID      string         `json:"clusterID"`
	Metadata       map[string]any `json:"metadata"`
}

type controlPlaneView struct {
	DiscoveryAddress string `json:"discoveryAddress"`
	CAAddress        string `json:"caAddress"`
	CertProvider     string `json:"certProvider"`
	RootCAFile       string `json:"rootCAFile"`
	IstiodSAN        string `json:"istiodSAN"`
}

type secretsView struct {
	TTL                   string `json:"ttl"`
	GracePeriodRatio      string `json:"gracePeriodRatio"`
	KeyType               string `json:"keyType"`
	RSAKeySize            int    `json:"rsaKeySize"`
	ECCSignatureAlgorithm string `json:"eccSignatureAlgorithm"`
	ECCCurve              string `json:"eccCurve"`
	OutputCertsDir        string `json:"outputCerts"`
	FileMountedCerts      bool   `json:"fileMountedCerts"`
}

type envoyView struct {
	Disabled                    bool   `json:"disabled"`
	RestartInPlace              bool   `json:"restartInPlace"`
	LogLevel                    string `json:"logLevel"`
	ComponentLogLevel           string `json:"componentLogLevel"`
	BootstrapOverride           string `json:"bootstrapOverride"`
	ExitOnZeroActiveConnections bool   `json:"exitOnZeroActiveConnections"`
	MinimumDrainDuration        string `json:"minimumDrainDuration"`
}

type appView struct {
	KubeAppProbers map[string]AppProber `json:"kubeAppProbers"`
	Prometheus     *PrometheusScrape    `json:"prometheus"`
}

// YAML renders c with secrets masked, as `pilot-agent check` prints it. Keys
// are sorted, so the output is stable for golden files and diffs.
func (c *Config) YAML() ([]byte, error) {
	m := c.Masked()
	pc, err := protoJSON(orEmpty(m.Proxy))
	if err != nil {
		return nil, fmt.Errorf("render proxyConfig: %w", err)
	}
	// defaultConfig is the mesh's input to proxyConfig, which is shown in full;
	// printing both would show two different "proxy configs".
	mesh := proto.Clone(m.Mesh).(*meshconfig.MeshConfig)
	if mesh == nil {
		mesh = &meshconfig.MeshConfig{}
	}
	mesh.DefaultConfig = nil
	mc, err := protoJSON(mesh)
	if err != nil {
		return nil, fmt.Errorf("render meshConfig: %w", err)
	}
	keyType := "RSA"
	if m.Secrets.ECCSignatureAlgorithm == "ECDSA" {
		keyType = "ECDSA"
	}
	v := view{
		ProxyType: m.ProxyType,
		Platform:  m.Platform,
		Node: nodeView{
			ID: m.NodeID(), PodName: m.PodName, PodNamespace: m.PodNamespace, InstanceIPs: m.InstanceIPs,
			ServiceAccount: m.ServiceAccount, SPIFFEID: m.Identity().String(), TrustDomain: m.TrustDomain,
			Domain: m.Domain, ClusterID: m.ClusterID, Metadata: m.NodeMetadata,
		},
		ControlPlane: controlPlaneView{
			DiscoveryAddress: m.DiscoveryAddress(), CAAddress: m.ControlPlane.CAAddress,
			CertProvider: string(m.ControlPlane.CertProvider), RootCAFile: m.ControlPlane.RootCAFile, IstiodSAN: m.ControlPlane.IstiodSAN,
		},
		Secrets: secretsView{
			TTL: m.Secrets.TTL.String(), GracePeriodRatio: strconv.FormatFloat(m.Secrets.GracePeriodRatio, 'g', -1, 64),
			KeyType: keyType, RSAKeySize: m.Secrets.RSAKeySize, ECCSignatureAlgorithm: m.Secrets.ECCSignatureAlgorithm,
			ECCCurve: m.Secrets.ECCCurve, OutputCertsDir: m.Secrets.OutputCertsDir, FileMountedCerts: m.Secrets.FileMountedCerts,
		},
		Envoy: envoyView{
			Disabled: m.Envoy.Disabled, RestartInPlace: m.Envoy.RestartInPlace, LogLevel: m.Envoy.LogLevel,
			ComponentLogLevel: m.Envoy.ComponentLogLevel, BootstrapOverride: m.Envoy.BootstrapOverride,
			ExitOnZeroActiveConnections: m.Envoy.ExitOnZeroActiveConnections, MinimumDrainDuration: m.Envoy.MinimumDrainDuration.String(),
		},
		App:         appView{KubeAppProbers: m.App.KubeAppProbers, Prometheus: m.App.Prometheus},
		Paths:       m.Paths,
		Capture:     m.Capture,
		DryRun:      m.DryRun,
		ProxyConfig: pc,
		Mesh:        mc,
		Sources:     m.Sources,
	}
	return yaml.Marshal(v)
}

func orEmpty(p *meshconfig.ProxyConfig) *meshconfig.ProxyConfig {
	if p == nil {
		return &meshconfig.ProxyConfig{}
	}
	return p
}
