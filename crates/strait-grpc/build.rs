//! Generates the demo echo service's client and server from a Rust description, so building
//! strait needs no `protoc`.

fn main() {
    let method = |name: &str, route: &str, client_streaming: bool, server_streaming: bool| {
        let mut builder = tonic_build::manual::Method::builder()
            .name(name)
            .route_name(route)
            .input_type("crate::echo::EchoRequest")
            .output_type("crate::echo::EchoReply")
            .codec_path("tonic_prost::ProstCodec");
        if client_streaming {
            builder = builder.client_streaming();
        }
        if server_streaming {
            builder = builder.server_streaming();
        }
        builder.build()
    };
    let echo = tonic_build::manual::Service::builder()
        .name("Echo")
        .package("strait.echo.v1")
        .method(method("unary", "Unary", false, false))
        .method(method("server_stream", "ServerStream", false, true))
        .method(method("client_stream", "ClientStream", true, false))
        .method(method("bidi", "Bidi", true, true))
        .build();
    tonic_build::manual::Builder::new().compile(&[echo]);
}
