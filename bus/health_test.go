package bus

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/comet-go/comet/internal/vtptest"
)

// A full disk under the embedded store: the bus says so within a second,
// refuses at once while it lasts, and takes writes again within seconds
// of the space being freed, with everything stored before still there.
func TestStoreFullRecovers(t *testing.T) {
	mnt := vtptest.Tmpfs(t, 64<<20)
	b := openBus(t, Config{StoreDir: filepath.Join(mnt, "store"), MaxStore: 16 << 20})
	for i := range 50 {
		ingest(t, b, testEvent(i), Accepted)
	}
	free := vtptest.Fill(t, mnt)
	start := time.Now()
	// The next store hits the full disk.
	_, err := b.Ingest(ctxT(t), testEvent(50))
	if !errors.Is(err, ErrStoreUnavailable) {
		t.Fatalf("Ingest on a full disk: %v; want ErrStoreUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Ingest on a full disk answered after %v", d)
	}
	if b.Healthy() {
		t.Fatal("bus healthy on a full disk")
	}
	st := b.StoreStatus()
	if st.Healthy || st.Store != b.cfg.StoreDir || st.Free < 0 || !errors.Is(st.Err, ErrStoreUnavailable) {
		t.Fatalf("StoreStatus = %+v", st)
	}
	for i := 51; i < 60; i++ {
		t0 := time.Now()
		if _, err := b.Ingest(ctxT(t), testEvent(i)); !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("Ingest while failing: %v", err)
		}
		if d := time.Since(t0); d > 100*time.Millisecond {
			t.Errorf("Ingest while failing took %v", d)
		}
	}
	free()
	if !waitUntil(10*time.Second, b.Healthy) {
		t.Fatalf("store not healthy 10 s after space was freed: %+v", b.StoreStatus())
	}
	for i := 50; i < 60; i++ {
		ingest(t, b, testEvent(i), Accepted)
	}
	for i := range 50 {
		ingest(t, b, testEvent(i), Duplicate)
	}
}
