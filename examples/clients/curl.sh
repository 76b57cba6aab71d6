#!/bin/sh
# smsroute serve from the shell. KEY is one of [serve] client keys.
BASE=http://127.0.0.1:8780
KEY=${SMSROUTE_CLIENT_KEY:?set SMSROUTE_CLIENT_KEY}

# One number: where does it go?
curl -s -H "Authorization: Bearer $KEY" "$BASE/v1/route?mobile=13972565391"
# {"mobile":"13972565391","carrier":"电信","initial":"移动","ported":true,"virtual":false,
#  "area":"湖北-宜昌","gateway":"SMGP","source":"upstream","reason":null}

# Many numbers, in order (duplicates share one lookup):
curl -s -H "X-Api-Key: $KEY" -H 'Content-Type: application/json' \
     -d '{"mobiles": ["13972565391", "18612345678", "not a number"]}' "$BASE/v1/route/batch"

# Code written for the vendor: change its base URL, use a client key as apikey.
curl -s -d "apikey=$KEY&mobile=13972565391" "$BASE/carrier"
curl -s -d "apikey=$KEY" "$BASE/balance"
