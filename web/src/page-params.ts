/**
 * Who this page is and where it talks to, all from the page URL, so that two
 * browser windows can be two users:
 * `?user=bob&conversation=team&server=http://127.0.0.1:8080&token=…`.
 */
export interface PageParams {
  /** The user this page acts as (reader id for receipts, sender id for the watch). */
  readonly user: string;
  /** The group conversation shown. */
  readonly conversation: string;
  /** Base URL of the read-receipt service. */
  readonly server: string;
  /** A short-lived user token, sent as `Authorization: Bearer`; "" in development mode. */
  readonly token: string;
  /** Where the conversation's messages come from (the messaging backend's part, not the receipt service's). */
  readonly historyUrl: string;
  /** Members per ListReadMembers page. */
  readonly pageSize: number;
}

export type ParamsResult =
  | { readonly ok: true; readonly params: PageParams }
  | { readonly ok: false; readonly problems: readonly string[] };

const defaultPageSize = 50;

export function readPageParams(href: string): ParamsResult {
  const url = new URL(href);
  const query = url.searchParams;
  const problems: string[] = [];
  const required = (name: string): string => {
    const value = query.get(name)?.trim() ?? "";
    if (value === "") problems.push(`${name} is missing`);
    return value;
  };
  const user = required("user");
  const conversation = required("conversation");
  const serverText = required("server");
  let server = "";
  if (serverText !== "") {
    const parsed = URL.parse(serverText);
    if (parsed === null || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) {
      problems.push(`server must be an http(s) URL, got ${serverText}`);
    } else {
      server = parsed.href.replace(/\/+$/, "");
    }
  }
  const pageSizeText = query.get("pageSize");
  const pageSize = pageSizeText === null ? defaultPageSize : Number(pageSizeText);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
    problems.push(`pageSize must be a whole number from 1 to 1000, got ${pageSizeText}`);
  }
  const historyUrl = new URL(
    query.get("history") ?? `conversations/${encodeURIComponent(conversation)}.json`,
    url,
  ).href;
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    params: { user, conversation, server, token: query.get("token") ?? "", historyUrl, pageSize },
  };
}
