package config

// minAdminToken is the shortest admin token accepted: the token is all that
// stands between the network and the admin page's publish form.
const minAdminToken = 16

// validateAdmin checks server.admin_listen and server.admin_token. Both are
// optional; each is checked only when written in the file, so a config
// without them says nothing about them (the admin page is then simply not
// served), while one that names them but leaves them empty (an env() that
// resolved to nothing) is refused rather than silently turning the page
// off.
func (d *decoder) validateAdmin(c *Config) {
	s := c.Server
	if _, set := d.pos["server.admin_listen"]; set && !d.failed["server.admin_listen"] {
		switch {
		case !validListen(s.AdminListen):
			d.errorf(d.posOf("server.admin_listen"), "server.admin_listen",
				`must be host:port, such as "127.0.0.1:7513"%s (got %q); remove the key to serve /metrics and the admin page on server.listen`, portRange(s.AdminListen), s.AdminListen)
		case s.AdminListen == s.Listen:
			d.errorf(d.posOf("server.admin_listen"), "server.admin_listen",
				"must differ from server.listen (%q): it is a second listener; remove the key to serve everything on server.listen", s.Listen)
		}
	}
	if _, set := d.pos["server.admin_token"]; set && !d.failed["server.admin_token"] && len(s.AdminToken) < minAdminToken {
		if s.AdminToken == "" {
			d.errorf(d.posOf("server.admin_token"), "server.admin_token",
				`is empty; set it (for example admin_token = env("HERALD_ADMIN_TOKEN")) or remove the key, which turns the admin page off`)
		} else {
			d.errorf(d.posOf("server.admin_token"), "server.admin_token",
				"must be at least %d characters (got %d): it guards the admin page, publish form included", minAdminToken, len(s.AdminToken))
		}
	}
}
