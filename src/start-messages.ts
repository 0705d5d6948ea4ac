import type { Config } from "./config.js";

/** A host as it goes in a URL a person can open: a wildcard address is this machine. */
function urlHost(host: string): string {
  if (host === "0.0.0.0" || host === "::" || host === "") return "localhost";
  return host.includes(":") ? `[${host}]` : host;
}

export interface StartBanner {
  /** For the log line: the addresses to call and probe, and in development a call to try. */
  readonly fields: { url: string; health: string; metrics: string; tryIt: string };
  /** The same for a person at a terminal, a few lines. */
  readonly text: string;
}

/** What `npm start` tells about the running service, and a first call to make. */
export function startBanner(config: Config, port: number): StartBanner {
  const url = `http://${urlHost(config.host)}:${port}`;
  const development = config.tenants.file === undefined && config.tenants.json === undefined;
  const auth = development ? "" : " -H 'authorization: Bearer <API key>'";
  const tryIt = `curl -s ${url}/receipts.v1.MembershipService/AddMembers -H 'content-type: application/json'${auth} -d '{"groupId":"team","userIds":["alice","bob"]}'`;
  const fields = { url, health: `${url}/healthz`, metrics: `${url}/metrics`, tryIt };
  const mode = development
    ? "Development mode: no credentials needed, reachable from this machine only."
    : "Tenants configured: every call needs Authorization: Bearer <API key or user token>.";
  const text = `
  gRPC, gRPC-Web and Connect  ${url}
  health                      ${fields.health}   (readiness: ${url}/readyz)
  metrics                     ${fields.metrics}

  ${mode} Try:
    ${tryIt}
  then the API in README.md, or the CLI: node dist/src/cli/main.js --help

`;
  return { fields, text };
}

/** The one line that explains a port the service cannot listen on; undefined for other errors. */
export function cannotListen(error: unknown, config: Config): string | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const where = `cannot listen on ${config.host}:${config.port}`;
  switch (code) {
    case "EADDRINUSE":
      return `read-receipts: ${where}: the port is in use by another process (another npm start?); stop it or choose another port with RECEIPTS_PORT`;
    case "EACCES":
      return `read-receipts: ${where}: not allowed (ports below 1024 need privileges); choose another port with RECEIPTS_PORT`;
    case "EADDRNOTAVAIL":
      return `read-receipts: ${where}: the address is not one of this machine's; check RECEIPTS_HOST`;
    default:
      return undefined;
  }
}
