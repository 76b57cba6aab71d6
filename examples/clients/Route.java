// smsroute serve from Java 11+ (java.net.http). KEY is one of [serve] client keys.
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

public final class Route {
    private static final HttpClient HTTP = HttpClient.newBuilder()
            .connectTimeout(Duration.ofSeconds(1)).build();   // one client: keep-alive

    /** Returns the JSON answer: {"mobile", "carrier", "gateway", "source", ...}. */
    public static String route(String base, String key, String mobile) throws Exception {
        HttpRequest request = HttpRequest.newBuilder(
                        URI.create(base + "/v1/route?mobile=" + URLEncoder.encode(mobile, StandardCharsets.UTF_8)))
                .header("Authorization", "Bearer " + key)
                .timeout(Duration.ofSeconds(2))
                .GET().build();
        HttpResponse<String> response = HTTP.send(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        if (response.statusCode() != 200) {   // 400 invalid_number, 422 no_route, 401, 429
            throw new IllegalStateException(response.statusCode() + " " + response.body());
        }
        return response.body();                 // parse with your JSON library of choice
    }

    public static void main(String[] args) throws Exception {
        System.out.println(route("http://127.0.0.1:8780", System.getenv("SMSROUTE_CLIENT_KEY"), "13972565391"));
    }
}
