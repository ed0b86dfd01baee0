-- wrk script: POST the SPEC's example order.
wrk.method = "POST"
wrk.body = '{"customer_id":"CUST-001","items":[{"item":"Laptop","quantity":1}]}'
wrk.headers["Content-Type"] = "application/json"
