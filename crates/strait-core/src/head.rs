use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Request, Uri, Version};

/// A request's head, as the phases that need no body see it: routing, filters, admission.
/// strait's own type, so the HTTP engine beneath can change without touching them. Moving a
/// request in and out of it copies no header and allocates nothing.
#[derive(Debug)]
pub struct RequestHead {
    parts: Parts,
}

impl RequestHead {
    /// Splits a request into its head and its body.
    pub fn from_request<B>(request: Request<B>) -> (RequestHead, B) {
        let (parts, body) = request.into_parts();
        (RequestHead { parts }, body)
    }

    /// A copy of a request's head, leaving the request as it is (extensions are not
    /// copied: they need not be `Clone`).
    pub fn copied_from<B>(request: &Request<B>) -> RequestHead {
        let mut copy = Request::new(());
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        RequestHead::from_request(copy).0
    }

    /// The request again, with `body`.
    pub fn into_request<B>(self, body: B) -> Request<B> {
        Request::from_parts(self.parts, body)
    }

    pub fn method(&self) -> &Method {
        &self.parts.method
    }

    pub fn uri(&self) -> &Uri {
        &self.parts.uri
    }

    pub fn uri_mut(&mut self) -> &mut Uri {
        &mut self.parts.uri
    }

    pub fn version(&self) -> Version {
        self.parts.version
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.parts.headers
    }

    /// The URI and the headers at once, for changes that read one to write the other.
    pub fn uri_and_headers_mut(&mut self) -> (&mut Uri, &mut HeaderMap) {
        (&mut self.parts.uri, &mut self.parts.headers)
    }

    /// What the engine attaches (an HTTP/1.1 upgrade, say), handed back with the request.
    pub fn extensions(&self) -> &Extensions {
        &self.parts.extensions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_comes_back_whole() {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("http://example.com/a?b=c")
            .version(Version::HTTP_2)
            .header("x-one", "1")
            .body("body")
            .unwrap();
        request.extensions_mut().insert(7u32);
        let (head, body) = RequestHead::from_request(request);
        assert_eq!(head.method(), Method::POST);
        assert_eq!(head.uri().path(), "/a");
        assert_eq!(head.extensions().get::<u32>(), Some(&7));
        let request = head.into_request(body);
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "http://example.com/a?b=c");
        assert_eq!(request.version(), Version::HTTP_2);
        assert_eq!(request.headers()["x-one"], "1");
        assert_eq!(request.extensions().get::<u32>(), Some(&7));
        assert_eq!(*request.body(), "body");
    }

    #[test]
    fn a_copy_leaves_the_request_alone() {
        let request = Request::put("/x").header("x-two", "2").body(()).unwrap();
        let head = RequestHead::copied_from(&request);
        assert_eq!(head.method(), Method::PUT);
        assert_eq!(head.headers()["x-two"], "2");
        assert_eq!(request.headers()["x-two"], "2");
    }
}
