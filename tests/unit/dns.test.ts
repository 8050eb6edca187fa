import { checkDomainInZone } from "../../src/dns";

// domainInZone feeds Cloudflare's answer (getZone) to this check; the stack tests see its
// result in the server's labels and the records' names.
const ZONE_ID = "0123456789abcdef0123456789abcdef";

describe("checkDomainInZone", () => {
    test.each(["example-site.org", "blog.example-site.org", "a.b.example-site.org"])("accepts %s in example-site.org", (domain) => {
        expect(checkDomainInZone(domain, "example-site.org", ZONE_ID)).toBe(domain);
    });

    test.each(["example-site.net", "blog.other.org", "notexample-site.org"])(
        "refuses %s, naming the domain, the zone and what to change",
        (domain) => {
            expect(() => checkDomainInZone(domain, "example-site.org", ZONE_ID)).toThrow(
                `blog.host.domain: got ${JSON.stringify(domain)}; expected a name in the Cloudflare zone "example-site.org" ` +
                    `(blog:cloudflareZoneId ${ZONE_ID}): change the domain in the host file or the zone id in the stack config`,
            );
        },
    );
});
