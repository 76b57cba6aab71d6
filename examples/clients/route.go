// smsroute serve from Go. KEY is one of [serve] client keys.
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"
)

// Decision is the answer of GET /v1/route.
type Decision struct {
	Mobile  string  `json:"mobile"`
	Carrier *string `json:"carrier"` // 移动, 联通, 电信, 广电, or null
	Initial *string `json:"initial"`
	Ported  *bool   `json:"ported"` // null when the answer came from the segment table
	Virtual bool    `json:"virtual"`
	Area    *string `json:"area"`
	Gateway string  `json:"gateway"`
	Source  string  `json:"source"` // cache, upstream, stale, fallback
	Reason  *string `json:"reason"`
}

var client = &http.Client{Timeout: 2 * time.Second} // one client: keep-alive

func route(base, key, mobile string) (*Decision, error) {
	req, err := http.NewRequest("GET", base+"/v1/route?mobile="+url.QueryEscape(mobile), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK { // 400 invalid_number, 422 no_route, 401, 429
		var e struct{ Error, Message string }
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return nil, fmt.Errorf("%d %s: %s", resp.StatusCode, e.Error, e.Message)
	}
	var d Decision
	return &d, json.NewDecoder(resp.Body).Decode(&d)
}

func main() {
	d, err := route("http://127.0.0.1:8780", os.Getenv("SMSROUTE_CLIENT_KEY"), "13972565391")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println(d.Gateway, d.Source)
}
