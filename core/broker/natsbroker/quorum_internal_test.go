package natsbroker

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
)

// quorum reads a stream's info as NATS gives it in each case seen on a real
// three-server cluster (TestNATSClusterReadyFollowsQuorum): ready only
// when a leader is named and has a majority of the servers with it.
func TestQuorum(t *testing.T) {
	peer := func(name string, current, offline bool) *jetstream.PeerInfo {
		return &jetstream.PeerInfo{Name: name, Current: current, Offline: offline}
	}
	for _, tc := range []struct {
		name    string
		cluster *jetstream.ClusterInfo
		want    string // "" when ready; else a part of the error
	}{
		{"single server", nil, ""},
		{"one replica in a cluster", &jetstream.ClusterInfo{Leader: "n1"}, ""},
		{"all current", &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{peer("n2", true, false), peer("n3", true, false)}}, ""},
		{"one server of three down", &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{peer("n2", true, true), peer("n3", true, false)}}, ""},
		{"one replica behind", &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{peer("n2", false, false), peer("n3", true, false)}}, ""},
		// Right after two servers stopped: the leader still leads, and
		// marks them offline (still current, for ten seconds).
		{"leader alone, replicas just stopped", &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{peer("n2", true, true), peer("n3", true, true)}},
			"NATS stream S has no quorum: its leader n1 has 1 of its 3 servers (offline: n2, n3)"},
		// A crashed replica is not marked offline yet, but no longer current.
		{"leader alone, replicas silent", &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{peer("n2", false, false), peer("n3", true, true)}},
			"its leader n1 has 1 of its 3 servers (offline: n3; not current: n2)"},
		{"two of five", &jetstream.ClusterInfo{Leader: "n1", Replicas: []*jetstream.PeerInfo{peer("n2", true, false), peer("n3", false, true), peer("n4", false, true), peer("n5", false, false)}},
			"has 2 of its 5 servers"},
		// Once the leader stepped down, the server left answers from its
		// own copy, naming no leader and listing itself.
		{"no leader", &jetstream.ClusterInfo{Replicas: []*jetstream.PeerInfo{peer("n1", false, false), peer("n2", false, true), peer("n3", false, true)}},
			"NATS stream S has no leader (offline: n2, n3); publishes fail until a majority of its 3 servers elects one"},
		{"election under way", &jetstream.ClusterInfo{Replicas: []*jetstream.PeerInfo{peer("n1", true, false), peer("n2", false, false), peer("n3", false, false)}},
			"has no leader (no quorum of its servers, or an election under way)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := quorum(&jetstream.StreamInfo{Config: jetstream.StreamConfig{Name: "S"}, Cluster: tc.cluster})
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, broker.ErrUnavailable)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
