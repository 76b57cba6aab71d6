<?php
// smsroute serve from PHP (curl extension). $key is one of [serve] client keys.
function smsroute_route(string $mobile, string $key, string $base = 'http://127.0.0.1:8780'): array
{
    $ch = curl_init($base . '/v1/route?mobile=' . rawurlencode($mobile));
    curl_setopt_array($ch, [
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_HTTPHEADER => ['Authorization: Bearer ' . $key],
        CURLOPT_TIMEOUT_MS => 2000,   // the service answers within its deadline (0.5 s)
    ]);
    $body = curl_exec($ch);
    $status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
    curl_close($ch);
    $answer = json_decode((string) $body, true) ?? [];
    if ($status === 200) {
        return $answer;               // $answer['gateway'], $answer['carrier'], $answer['source']
    }
    // 400 invalid_number (nothing paid), 422 no_route, 401 bad key, 429 slow down
    throw new RuntimeException(($answer['error'] ?? 'http_' . $status) . ': ' . ($answer['message'] ?? ''));
}

$route = smsroute_route('13972565391', getenv('SMSROUTE_CLIENT_KEY'));
echo $route['gateway'], PHP_EOL;      // SMGP: ported from 移动 to 电信
