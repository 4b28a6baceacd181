package signature

import (
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestTrustReload(t *testing.T) {
	dir := t.TempDir()
	trusted := filepath.Join(dir, "trusted.asc")
	others := filepath.Join(dir, "others")
	writeFile(t, trusted, vector(t, "author.pub.asc"))
	writeFile(t, others, vector(t, "notary.pub.asc"))
	tr, err := NewTrust(trusted, others)
	if err != nil {
		t.Fatal(err)
	}
	first := tr.Current()
	if !reflect.DeepEqual(first.Trusted.Fingerprints(), []string{authorFpr}) || !reflect.DeepEqual(first.Others.Fingerprints(), []string{notaryFpr}) {
		t.Fatalf("trusted %v others %v", first.Trusted.Fingerprints(), first.Others.Fingerprints())
	}
	v := *first
	v.Now = clock
	if _, err := v.VerifyEvent(vector(t, "event-signed-notary.xml"), authorIVORN); err != nil {
		t.Fatal(err)
	}

	// The operator adds the listener and sends SIGHUP.
	writeFile(t, trusted, append(vector(t, "author.pub.asc"), vector(t, "listener.pub.asc")...))
	if err := tr.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := tr.Current().Trusted.Fingerprints(); !reflect.DeepEqual(got, []string{authorFpr, listenerFpr}) {
		t.Fatalf("after reload: %v", got)
	}
	if first.Trusted.Len() != 1 {
		t.Fatal("a reload changed a Verifier already handed out")
	}

	// A broken file: the error names it and the current keys stay.
	current := tr.Current()
	writeFile(t, others, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\ngarbage\n"))
	if err := tr.Reload(); err == nil || !strings.Contains(err.Error(), others) {
		t.Fatalf("got %v, want an error naming %s", err, others)
	}
	if tr.Current() != current {
		t.Fatal("a failed reload replaced the keys")
	}

	if _, err := NewTrust(filepath.Join(dir, "missing.asc"), ""); err == nil {
		t.Fatal("missing trusted keys accepted")
	}
	// No others file: Others is empty.
	tr, err = NewTrust(trusted, "")
	if err != nil || tr.Current().Others.Len() != 0 {
		t.Fatalf("%v", err)
	}
}

// Verifications run while the broker reloads.
func TestTrustConcurrentReload(t *testing.T) {
	dir := t.TempDir()
	trusted := filepath.Join(dir, "trusted.asc")
	writeFile(t, trusted, vector(t, "listener.pub.asc"))
	tr, err := NewTrust(trusted, "")
	if err != nil {
		t.Fatal(err)
	}
	reply := vector(t, "authenticate-signed-listener.xml")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				v := *tr.Current()
				v.Now = clock
				if _, err := v.VerifyAny(reply); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 10; i++ {
			if err := tr.Reload(); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
