package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/heraldhq/herald/core/config"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// Preflight checks the plugin blocks a reload would hand to Apply, and
// touches no running plugin: every block that is added or changed (by
// Hash) is started in a dry run as
// `herald validate` does (handshake, manifest, Configure with dry_run),
// and the claims of the set Apply would end with (unchanged plugins with
// the manifests they run with, the others with their dry run's) are
// checked against each other. A nil error means Apply will not fail for
// anything in the file itself; the caller keeps the running config
// otherwise, so that a typo never stops a working plugin.
func (m *Manager) Preflight(ctx context.Context, plugins []config.Plugin) error {
	m.applyMu.Lock() // no Apply between what we look at and the caller's
	defer m.applyMu.Unlock()

	names := map[string]bool{}
	unchanged := map[string]*pluginpb.Manifest{}
	var starting []config.Plugin
	m.mu.RLock()
	for _, p := range plugins {
		if names[p.Name] {
			m.mu.RUnlock()
			return fmt.Errorf("plugin %q is declared twice", p.Name)
		}
		names[p.Name] = true
		s := m.plugins[p.Name]
		// A plugin that failed with this very block keeps failing or
		// not as before: Apply retries it, and its dry run would only
		// block the rest of the file.
		if s != nil && s.cfg.Hash == p.Hash {
			s.mu.Lock()
			unchanged[p.Name] = s.manifest
			s.mu.Unlock()
			continue
		}
		starting = append(starting, p)
	}
	m.mu.RUnlock()

	// Dry runs in parallel: each is bounded by StartTimeout.
	errs := make([]error, len(starting))
	dry := make([]*pluginpb.Manifest, len(starting))
	var wg sync.WaitGroup
	for i, p := range starting {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst, err := m.launch(ctx, p, true)
			if err != nil {
				errs[i] = err
				return
			}
			dry[i] = inst.manifest
			inst.kill()
		}()
	}
	wg.Wait()
	// Claims, in name order: each started block against every other
	// plugin of the new set, as Apply admits them.
	order := make([]int, len(starting))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return starting[order[a]].Name < starting[order[b]].Name })
	checked := unchanged // then each started block that passed
	for _, i := range order {
		p := starting[i]
		if dry[i] == nil {
			continue
		}
		if err := claimConflicts(p, dry[i], checked); err != nil {
			errs[i] = err
			continue
		}
		checked[p.Name] = dry[i]
	}
	ordered := make([]error, 0, len(order))
	for _, i := range order {
		ordered = append(ordered, errs[i])
	}
	return errors.Join(ordered...)
}
