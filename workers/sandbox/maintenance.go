package sandbox

import (
	"net/http"
	"strings"
	"time"
	_ "time/tzdata" // Europe/Paris on machines without zoneinfo
)

// maintenanceWindow is one provider's recurring maintenance, Europe/Paris
// time, from the operator's settings (maintenances.yml).
type maintenanceWindow struct {
	route    string        // path fragment of the routes it stops
	weekday  *time.Weekday // nil: every day
	from, to time.Duration // since midnight
}

var sunday = time.Sunday

// maintenances are the windows of the providers behind the sandbox's
// routes: CNAF & MSA on Sundays 23:00–23:45 (quotient familial), MEN daily
// 01:10–02:30 (scolarités).
var maintenances = []maintenanceWindow{
	{route: "/dss/quotient_familial/", weekday: &sunday, from: 23 * time.Hour, to: 23*time.Hour + 45*time.Minute},
	{route: "/men/scolarites/", from: time.Hour + 10*time.Minute, to: 2*time.Hour + 30*time.Minute},
}

var paris = func() *time.Location {
	l, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		return time.UTC
	}
	return l
}()

// maintenanceLeft is how long the provider behind path stays in
// maintenance at now; 0 when it is not.
func maintenanceLeft(path string, now time.Time) time.Duration {
	t := now.In(paris)
	midnight := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, paris)
	since := t.Sub(midnight)
	for _, m := range maintenances {
		if !strings.Contains(path, m.route) || (m.weekday != nil && *m.weekday != t.Weekday()) {
			continue
		}
		if since >= m.from && since < m.to {
			return m.to - since
		}
	}
	return 0
}

// writeMaintenance answers 503 XX020 with meta.retry_in, as the API does
// during a provider's maintenance.
func writeMaintenance(w http.ResponseWriter, rt *route, left time.Duration) int {
	provider, prefix := rt.provider()
	return writeErrors(w, http.StatusServiceUnavailable, apiError{Code: prefix + "020", Title: "Maintenance du fournisseur de données",
		Detail: "Le fournisseur de données est en maintenance. Veuillez réessayer plus tard.",
		Meta:   map[string]any{"provider": provider, "retry_in": int(left.Round(time.Second).Seconds())}})
}
