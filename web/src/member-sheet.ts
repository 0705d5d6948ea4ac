import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import type { ReceiptsClient } from "../../client/src/browser.js";
import { ReadFilter, type ReceiptUpdate } from "../../gen/receipts/v1/receipts_pb.js";
import type { ChatMessage } from "./conversation-history.js";
import { h, icon } from "./dom.js";
import { avatar, type People } from "./people.js";
import { readTime } from "./time-format.js";

export interface Counts {
  readonly read: number;
  readonly unread: number;
}

type Side = "read" | "unread";

interface Listing {
  /** Ordered by user id, as the service pages them. */
  members: { userId: string; readAt?: Date }[];
  nextPageToken: string;
  finished: boolean;
  started: boolean;
  loading: boolean;
  error: string;
}

const emptyListing = (): Listing => ({
  members: [],
  nextPageToken: "",
  finished: false,
  started: false,
  loading: false,
  error: "",
});

/**
 * "Message info": who has read one of the user's messages and who has not,
 * paged with ListReadMembers ("Load more"), kept current by the live updates.
 */
export class MemberSheet {
  readonly element: HTMLDialogElement;
  readonly #client: ReceiptsClient;
  readonly #conversationId: string;
  readonly #people: People;
  readonly #pageSize: number;
  readonly #preview = h("blockquote", { class: "sheet-preview" });
  readonly #previewTime = h("time", { class: "sheet-preview-time" });
  readonly #tabs: Record<Side, HTMLButtonElement>;
  readonly #list = h("ul", { class: "member-list", "aria-live": "polite" });
  readonly #status = h("p", { class: "member-status" });
  readonly #more = h("button", { type: "button", class: "load-more" }, "Load more");
  #message: ChatMessage | undefined;
  #counts: Counts = { read: 0, unread: 0 };
  #side: Side = "read";
  #listings: Record<Side, Listing> = { read: emptyListing(), unread: emptyListing() };
  /** Bumped on every open, so that answers for a previous message are dropped. */
  #generation = 0;

  constructor(options: {
    client: ReceiptsClient;
    conversationId: string;
    people: People;
    pageSize: number;
  }) {
    this.#client = options.client;
    this.#conversationId = options.conversationId;
    this.#people = options.people;
    this.#pageSize = options.pageSize;
    const tab = (side: Side, label: string) => {
      const button = h(
        "button",
        { type: "button", role: "tab", class: "tab", "data-side": side },
        label,
        h("span", { class: "tab-count" }),
      );
      button.addEventListener("click", () => this.#show(side));
      return button;
    };
    this.#tabs = { read: tab("read", "Read"), unread: tab("unread", "Not read yet") };
    const close = h("button", { type: "button", class: "icon-button", "aria-label": "Close" });
    close.append(icon("close"));
    close.addEventListener("click", () => this.element.close());
    this.#more.addEventListener("click", () => void this.#loadPage(this.#side));
    this.element = h(
      "dialog",
      { class: "sheet", "aria-labelledby": "sheet-title" },
      h("header", { class: "sheet-header" }, h("h2", { id: "sheet-title" }, "Message info"), close),
      h("div", { class: "sheet-message" }, this.#preview, this.#previewTime),
      h("div", { class: "tabs", role: "tablist" }, this.#tabs.read, this.#tabs.unread),
      h("div", { class: "sheet-body", role: "tabpanel" }, this.#list, this.#status, this.#more),
    );
    // A click on the backdrop (the dialog itself, outside its content) closes it.
    this.element.addEventListener("click", (event) => {
      if (event.target === this.element) this.element.close();
    });
    this.element.addEventListener("close", () => {
      this.#message = undefined;
      this.#generation += 1;
    });
  }

  get openMessageId(): string | undefined {
    return this.#message?.id;
  }

  open(message: ChatMessage, counts: Counts): void {
    this.#generation += 1;
    this.#message = message;
    this.#counts = counts;
    this.#listings = { read: emptyListing(), unread: emptyListing() };
    this.#preview.textContent = message.text;
    this.#previewTime.textContent = `Sent ${readTime(message.sentAt)}`;
    this.#previewTime.dateTime = message.sentAt.toISOString();
    if (!this.element.open) this.element.showModal();
    this.#show("read");
  }

  /** Keeps an open sheet current: the reader moves from "not read yet" to "read". */
  applyReceipt(update: ReceiptUpdate): void {
    const receipt = update.receipt;
    if (receipt === undefined || receipt.messageId !== this.#message?.id) return;
    this.#counts = { read: receipt.readCount, unread: receipt.unreadCount };
    const readAt = update.readAt === undefined ? undefined : timestampDate(update.readAt);
    const read = this.#listings.read;
    const last = read.members.at(-1)?.userId;
    // Insert only within the part already paged in; later pages will bring it otherwise.
    if (read.started && (read.finished || (last !== undefined && update.readerId < last))) {
      insertSorted(read.members, { userId: update.readerId, readAt });
    }
    const unread = this.#listings.unread;
    unread.members = unread.members.filter((m) => m.userId !== update.readerId);
    this.#render();
  }

  #show(side: Side): void {
    this.#side = side;
    if (!this.#listings[side].started) void this.#loadPage(side);
    this.#render();
  }

  async #loadPage(side: Side): Promise<void> {
    const message = this.#message;
    const listing = this.#listings[side];
    if (message === undefined || listing.loading || listing.finished) return;
    const generation = this.#generation;
    listing.started = true;
    listing.loading = true;
    listing.error = "";
    this.#render();
    try {
      const page = await this.#client.receipts.listReadMembers({
        conversationId: this.#conversationId,
        messageId: message.id,
        filter: side === "read" ? ReadFilter.READ : ReadFilter.UNREAD,
        pageSize: this.#pageSize,
        pageToken: listing.nextPageToken,
      });
      if (generation !== this.#generation) return;
      for (const member of page.members) {
        insertSorted(listing.members, {
          userId: member.userId,
          readAt: member.readAt === undefined ? undefined : timestampDate(member.readAt),
        });
      }
      listing.nextPageToken = page.nextPageToken;
      listing.finished = page.isFinished;
    } catch (error) {
      if (generation !== this.#generation) return;
      listing.error = `Could not load the list: ${ConnectError.from(error).rawMessage}`;
    } finally {
      if (generation === this.#generation) listing.loading = false;
    }
    this.#render();
  }

  #render(): void {
    for (const side of ["read", "unread"] as const) {
      const tab = this.#tabs[side];
      tab.setAttribute("aria-selected", String(side === this.#side));
      const count = tab.querySelector(".tab-count");
      if (count !== null) count.textContent = String(this.#counts[side]);
    }
    const listing = this.#listings[this.#side];
    this.#list.replaceChildren(
      ...listing.members.map((member) =>
        h(
          "li",
          { class: "member", "data-user-id": member.userId },
          avatar(member.userId, this.#people.name(member.userId), "small"),
          h("span", { class: "member-name" }, this.#people.name(member.userId)),
          member.readAt === undefined
            ? null
            : h(
                "time",
                {
                  class: "member-time",
                  dateTime: member.readAt.toISOString(),
                  title: member.readAt.toLocaleString(),
                },
                readTime(member.readAt),
              ),
        ),
      ),
    );
    const none = this.#side === "read" ? "Nobody has read it yet." : "Everyone has read it.";
    this.#status.textContent = listing.error
      ? listing.error
      : listing.loading
        ? "Loading…"
        : listing.finished && listing.members.length === 0
          ? none
          : "";
    this.#status.classList.toggle("is-error", listing.error !== "");
    this.#more.hidden = !listing.started || listing.finished || listing.loading;
  }
}

function insertSorted(
  members: { userId: string; readAt?: Date }[],
  member: { userId: string; readAt?: Date },
): void {
  if (members.some((m) => m.userId === member.userId)) return;
  const at = members.findIndex((m) => m.userId > member.userId);
  members.splice(at === -1 ? members.length : at, 0, member);
}
