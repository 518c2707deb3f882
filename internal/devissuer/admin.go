package devissuer

import "net/http"

// handleAdminRotateKey is POST /admin/rotate-key: answers {"kid":NEW}.
func (s *Server) handleAdminRotateKey(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"kid": s.RotateSigningKey()})
}
