import { type LookupAddress, lookup } from "node:dns";
import { BlockList, isIP } from "node:net";
import type { WebhookUrlRules } from "./webhook-endpoint.js";

/**
 * Addresses a webhook must never reach unless the operator allows private
 * ones: a tenant's URL must not become a way into our own network
 * (loopback, private ranges, link-local including cloud metadata at
 * 169.254.169.254 and fd00:ec2::254, carrier-grade NAT, multicast, reserved).
 */
const forbidden = new BlockList();
for (const [network, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const) {
  forbidden.addSubnet(network, prefix, "ipv4");
}
for (const [network, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["64:ff9b:1::", 48],
  ["100::", 64],
  ["2001:db8::", 32],
  ["fc00::", 7],
  ["fe80::", 10],
  ["fec0::", 10],
  ["ff00::", 8],
] as const) {
  forbidden.addSubnet(network, prefix, "ipv6");
}

/** Whether a literal IP address is one webhooks may not reach without allowPrivate. */
export function isForbiddenAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return forbidden.check(address, "ipv4");
  if (family !== 6) return true;
  const embedded = embeddedIpv4(address);
  if (embedded !== undefined) return forbidden.check(embedded, "ipv4");
  return forbidden.check(address, "ipv6");
}

/** The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), -compatible or NAT64 (64:ff9b::) one. */
function embeddedIpv4(address: string): string | undefined {
  const match =
    /^(?:::ffff:|::|64:ff9b::)(?:(\d+\.\d+\.\d+\.\d+)|([0-9a-f]{1,4}):([0-9a-f]{1,4}))$/i.exec(
      address,
    );
  if (match === null) return undefined;
  if (match[1] !== undefined) return match[1];
  const high = Number.parseInt(match[2] as string, 16);
  const low = Number.parseInt(match[3] as string, 16);
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

/** Why a webhook URL is refused by its text alone, or undefined when it may be used. */
export function urlProblem(text: string, rules: WebhookUrlRules): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return "not a URL";
  }
  if (url.protocol !== "https:" && !(rules.allowPrivate && url.protocol === "http:")) {
    return rules.allowPrivate ? "must be an https:// or http:// URL" : "must be an https:// URL";
  }
  if (url.username !== "" || url.password !== "") return "must not hold a user name or password";
  if (url.hash !== "") return "must not have a #fragment";
  if (rules.allowPrivate) return undefined;
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (isIP(host) !== 0 && isForbiddenAddress(host)) {
    return `${host} is a loopback, private, link-local or reserved address (RECEIPTS_WEBHOOKS_ALLOW_PRIVATE=1 allows it)`;
  }
  if (/^localhost$|\.localhost$|\.internal$|\.local$/i.test(host)) {
    return `${host} names a local or internal host (RECEIPTS_WEBHOOKS_ALLOW_PRIVATE=1 allows it)`;
  }
  return undefined;
}

/** Thrown by the guarded lookup: the host resolved to an address webhooks may not reach. */
export class ForbiddenAddressError extends Error {
  override readonly name = "ForbiddenAddressError";
  readonly code = "EWEBHOOKADDRESS";
}

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * A `lookup` for http.request that resolves the host and refuses the
 * connection unless every address it resolved to may be reached: checked at
 * connect time, so a DNS answer that changes after validation (rebinding)
 * is caught too.
 */
export function guardedLookup(rules: WebhookUrlRules) {
  return (
    hostname: string,
    options: { all?: boolean; family?: number | "IPv4" | "IPv6" },
    callback: LookupCallback,
  ): void => {
    const family = options.family ?? 0;
    lookup(hostname, { family, all: true }, (error, addresses) => {
      if (error !== null) return callback(error, []);
      const bad = rules.allowPrivate
        ? undefined
        : addresses.find((entry) => isForbiddenAddress(entry.address));
      if (bad !== undefined) {
        return callback(
          new ForbiddenAddressError(
            `${hostname} resolves to ${bad.address}, which webhooks may not reach`,
          ),
          [],
        );
      }
      if (options.all === true) return callback(null, addresses);
      const first = addresses[0];
      if (first === undefined)
        return callback(new ForbiddenAddressError(`${hostname}: no address`), []);
      callback(null, first.address, first.family);
    });
  };
}
