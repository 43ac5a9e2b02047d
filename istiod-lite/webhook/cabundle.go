package webhook

import (
	"bytes"
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Names of the webhook configurations in deploy/kubernetes/webhooks.yaml.
const (
	ValidatingConfigName = "istiod-lite-validator"
	MutatingConfigName   = "istiod-lite-sidecar-injector"
)

// PatchCABundle writes bundle (the CA's roots, which sign the webhook serving
// certificate) into every webhook of the named configurations, so the API
// server trusts istiod-lite without a pre-provisioned certificate. Missing
// configurations are skipped: the webhooks are optional.
func PatchCABundle(ctx context.Context, client kubernetes.Interface, bundle []byte, validating, mutating string) error {
	if validating != "" {
		api := client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cfg, err := api.Get(ctx, validating, metav1.GetOptions{})
			if err != nil {
				return err
			}
			changed := false
			for i := range cfg.Webhooks {
				if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, bundle) {
					cfg.Webhooks[i].ClientConfig.CABundle, changed = bundle, true
				}
			}
			if !changed {
				return nil
			}
			_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
			return err
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("patching the CA bundle of ValidatingWebhookConfiguration %s: %w (istiod-lite needs get/update on it: deploy/kubernetes/rbac.yaml)", validating, err)
		}
	}
	if mutating != "" {
		api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cfg, err := api.Get(ctx, mutating, metav1.GetOptions{})
			if err != nil {
				return err
			}
			changed := false
			for i := range cfg.Webhooks {
				if !bytes.Equal(cfg.Webhooks[i].ClientConfig.CABundle, bundle) {
					cfg.Webhooks[i].ClientConfig.CABundle, changed = bundle, true
				}
			}
			if !changed {
				return nil
			}
			_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
			return err
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("patching the CA bundle of MutatingWebhookConfiguration %s: %w (istiod-lite needs get/update on it: deploy/kubernetes/rbac.yaml)", mutating, err)
		}
	}
	return nil
}
