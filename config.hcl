# Herald's development config: `make run` starts `herald serve -config config.hcl`.
# Every block and key is optional and defaults to the value written here,
# except two that have no default and must be given: auth.token_secret
# (unless auth.anonymous = true) and at least one auth.api_keys entry (the
# values below are development ones); and no plugin loads unless a plugin
# block declares it. docs/configuration.md describes each key.

server {
  listen          = "127.0.0.1:7512"
  allowed_origins = ["http://localhost:8080"]
}

auth {
  # DEV ONLY: the defaults below are a published secret and API key so that
  # a fresh checkout runs as is. Anywhere else, set HERALD_TOKEN_SECRET and
  # HERALD_API_KEY (or drop the defaults so that a missing one is an error).
  token_secret  = env("HERALD_TOKEN_SECRET", "dev-secret-change-me")
  api_keys      = [env("HERALD_API_KEY", "dev-api-key-change-me")]
  anonymous     = false
  open_channels = true # channels without ":" are open to every connection
  expiry_grace  = "30s"
}

delivery {
  max_batch    = 128
  max_delay    = "2ms"
  outbox_limit = 4096 # notifications waiting per connection
}

limits {
  max_frame_bytes   = 65536
  calls_per_second  = 50
  max_subscriptions = 1000
}

history {
  size      = 1000
  ttl       = "10m"
  max_bytes = 268435456 # 256 MiB for the history of all channels together
}

overload {
  busy_connections  = 50000
  busy_outbox_ratio = 0.5
}

broker "memory" {} # one node; a cluster shares a NATS server: docs/cluster.md

log {
  level  = "info"
  format = "text" # or "json"
}

# The SDK tutorial's plugin (examples/echo-plugin, docs/plugins.md): echo.say
# and echo.ask, on channels echo:<user>. Remove it in production.
plugin "echo" {
  command = "bin/plugins/echo"
}

# The four domain plugins, built into bin/plugins/ by `make build` (herald
# refuses to start while a declared plugin's binary does not exist, naming
# its `command`). They keep what must outlive them (memberships, grants, seqids,
# documents) in Herald's plugin State: on one node one file per plugin under
# state.dir (default "data/state", next to this file: <dir>/<plugin>.db); in a
# cluster (broker "nats") in JetStream, shared by every node.

# Unichat's notifications: plugins/chat/README.md.
plugin "chat" {
  command = "bin/plugins/chat"
  args    = []  # optional
  env     = {}  # optional, added to the plugin's environment
  config {      # decoded by the plugin (mapstructure)
    entering_window = "3s" # at most one `entering` per user and group per window
  }
}

# Speakap's change notifications: plugins/timelines/README.md.
plugin "timelines" {
  command = "bin/plugins/timelines"
  config {
    max_emit_channels = 64 # channels of one emit call
  }
}

# NucliaDB's knowledge-box notifications, GET /v1/kb/{kbid}/notifications
# and kb.waitFor: plugins/kb/README.md.
plugin "kb" {
  command = "bin/plugins/kb"
  config {
    index_replicas = 2 # resource_indexed per seqid that make it indexed
  }
}

# Kuzzle's realtime documents on the filter engine: plugins/documents/README.md.
plugin "documents" {
  command = "bin/plugins/documents"
  config {
    resume_window = "30s"  # an emptied room channel lives on this long, for resumes with since
    max_rooms     = 100000 # rooms (index, collection, filter) alive at once
  }
}
