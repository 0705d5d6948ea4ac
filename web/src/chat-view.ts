import type { ChatMessage, ConversationHistory } from "./conversation-history.js";
import { h, icon } from "./dom.js";
import type { Counts } from "./member-sheet.js";
import { avatar, initials, type People } from "./people.js";
import type { ConnectionState } from "./receipt-stream.js";
import { clockTime, dayLabel, fullTime, sameDay } from "./time-format.js";

export interface ChatViewOptions {
  readonly history: ConversationHistory;
  readonly people: People;
  readonly me: string;
  readonly onOpenReceipts: (message: ChatMessage) => void;
  readonly onMarkAllRead: () => void;
}

/** Consecutive messages of one sender within this time share one avatar and name. */
const groupWithinMs = 5 * 60_000;

/** The chat window: header with connection state, the timeline of bubbles, a toast. */
export class ChatView {
  readonly timeline: HTMLElement;
  readonly #options: ChatViewOptions;
  readonly #connection = h("span", { class: "connection", role: "status" });
  readonly #markAll = h("button", { type: "button", class: "button mark-all" }, "Mark all as read");
  readonly #toast = h("div", { class: "toast", role: "status", "aria-live": "polite" });
  readonly #banner = h("div", { class: "banner", role: "alert", hidden: true });
  readonly #receipts = new Map<string, HTMLButtonElement>();
  readonly #articles = new Map<string, HTMLElement>();
  #countdown: ReturnType<typeof setInterval> | undefined;
  #toastTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(root: HTMLElement, options: ChatViewOptions) {
    this.#options = options;
    const { history, people, me } = options;
    this.#markAll.addEventListener("click", () => options.onMarkAllRead());
    const groupAvatar = h("span", {
      class: "avatar avatar-large avatar-group",
      "aria-hidden": "true",
    });
    groupAvatar.textContent = initials(history.conversation.title);
    this.timeline = h("main", {
      class: "timeline",
      tabindex: 0,
      "aria-label": `Messages in ${history.conversation.title}`,
    });
    root.replaceChildren(
      h(
        "header",
        { class: "topbar" },
        groupAvatar,
        h(
          "div",
          { class: "topbar-title" },
          h("h1", {}, history.conversation.title),
          h(
            "p",
            {},
            icon("people"),
            `${history.people.length} members · signed in as ${people.name(me)}`,
          ),
        ),
        this.#connection,
        this.#markAll,
      ),
      this.#banner,
      this.timeline,
      this.#toast,
    );
    this.#renderMessages();
    this.setConnection({ kind: "connecting" });
  }

  /** Others' messages with their elements, to watch for being seen. */
  *othersMessages(): Iterable<[ChatMessage, HTMLElement]> {
    for (const message of this.#options.history.messages) {
      const article = this.#articles.get(message.id);
      if (message.senderId !== this.#options.me && article !== undefined) yield [message, article];
    }
  }

  scrollToLatest(): void {
    this.timeline.scrollTop = this.timeline.scrollHeight;
  }

  setCounts(messageId: string, counts: Counts): void {
    const button = this.#receipts.get(messageId);
    if (button === undefined) return;
    const total = counts.read + counts.unread;
    button.disabled = false;
    button.classList.toggle("is-all-read", total > 0 && counts.unread === 0);
    button.replaceChildren(
      icon(counts.read > 0 ? "double-check" : "check"),
      h("span", { class: "receipt-text" }, `Read by ${counts.read} of ${total}`),
    );
    button.setAttribute(
      "aria-label",
      `Read by ${counts.read} of ${total}. Show who has read this message.`,
    );
  }

  /** A message that did not ask for receipts shows none. */
  setNoReceipts(messageId: string): void {
    this.#receipts.get(messageId)?.remove();
    this.#receipts.delete(messageId);
  }

  markAcknowledged(messageIds: Iterable<string>): void {
    for (const id of messageIds) this.#articles.get(id)?.setAttribute("data-acknowledged", "");
  }

  setMarkAllBusy(busy: boolean): void {
    this.#markAll.disabled = busy;
    this.#markAll.textContent = busy ? "Marking…" : "Mark all as read";
  }

  setConnection(state: ConnectionState): void {
    clearInterval(this.#countdown);
    this.#connection.dataset.state = state.kind;
    const paint = () => {
      this.#connection.replaceChildren(
        h("span", { class: "connection-dot", "aria-hidden": "true" }),
        connectionLabel(state),
      );
    };
    paint();
    this.#connection.title = "reason" in state ? state.reason : "";
    // Retries cannot fix a stopped stream: say why, in words, above the messages.
    this.#banner.hidden = state.kind !== "stopped";
    this.#banner.textContent =
      state.kind === "stopped" ? `Read receipts are offline: ${state.reason}.` : "";
    if (state.kind === "reconnecting" && state.retryAt !== undefined) {
      this.#countdown = setInterval(paint, 1000);
    }
  }

  toast(text: string, kind: "info" | "error" = "info"): void {
    clearTimeout(this.#toastTimer);
    this.#toast.textContent = text;
    this.#toast.dataset.kind = kind;
    this.#toast.classList.add("is-shown");
    this.#toastTimer = setTimeout(() => this.#toast.classList.remove("is-shown"), 4000);
  }

  #renderMessages(): void {
    const { history, people, me } = this.#options;
    if (history.messages.length === 0) {
      this.timeline.append(h("p", { class: "timeline-empty" }, "No messages yet."));
      return;
    }
    let previous: ChatMessage | undefined;
    // One section per day, so that each day's label sticks only while its messages scroll by.
    let day: HTMLElement = this.timeline;
    for (const message of history.messages) {
      if (previous === undefined || !sameDay(previous.sentAt, message.sentAt)) {
        day = h(
          "section",
          { class: "day-group", "aria-label": dayLabel(message.sentAt) },
          h(
            "div",
            { class: "day", "aria-hidden": "true" },
            h("span", {}, dayLabel(message.sentAt)),
          ),
        );
        this.timeline.append(day);
      }
      const continued =
        previous !== undefined &&
        previous.senderId === message.senderId &&
        sameDay(previous.sentAt, message.sentAt) &&
        message.sentAt.getTime() - previous.sentAt.getTime() < groupWithinMs;
      const mine = message.senderId === me;
      const time = h(
        "time",
        { dateTime: message.sentAt.toISOString(), title: fullTime(message.sentAt) },
        clockTime(message.sentAt),
      );
      const bubble = h("div", { class: "bubble" }, message.text);
      let article: HTMLElement;
      if (mine) {
        const receipt = h(
          "button",
          { type: "button", class: "receipt", disabled: true },
          h("span", { class: "receipt-text" }, "Read by …"),
        );
        receipt.addEventListener("click", () => this.#options.onOpenReceipts(message));
        this.#receipts.set(message.id, receipt);
        article = h(
          "article",
          { class: "message mine", "data-message-id": message.id },
          h("div", { class: "message-body" }, bubble, h("div", { class: "meta" }, time, receipt)),
        );
      } else {
        const name = people.name(message.senderId);
        article = h(
          "article",
          { class: "message theirs", "data-message-id": message.id },
          continued ? h("span", { class: "avatar-spacer" }) : avatar(message.senderId, name),
          h(
            "div",
            { class: "message-body" },
            continued
              ? null
              : h("div", { class: "meta" }, h("span", { class: "name" }, name), time),
            bubble,
          ),
        );
        if (continued) bubble.title = clockTime(message.sentAt);
      }
      article.classList.toggle("continued", continued);
      this.#articles.set(message.id, article);
      day.append(article);
      previous = message;
    }
  }
}

function connectionLabel(state: ConnectionState): string {
  switch (state.kind) {
    case "connecting":
      return "Connecting…";
    case "live":
      return "Live";
    case "reconnecting": {
      if (state.retryAt === undefined) return "Reconnecting…";
      const seconds = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
      return `Reconnecting in ${seconds} s`;
    }
    case "stopped":
      return "Offline";
  }
}

/** A full-page notice for a page that cannot start (bad link, history not found). */
export function renderProblem(root: HTMLElement, title: string, lines: readonly string[]): void {
  root.replaceChildren(
    h(
      "section",
      { class: "problem" },
      h("h1", {}, title),
      ...lines.map((line) => h("p", {}, line)),
      h(
        "p",
        { class: "problem-hint" },
        "Open this page as ",
        h("code", {}, "?user=bob&conversation=team&server=http://127.0.0.1:8080"),
        " (add ",
        h("code", {}, "&token=…"),
        " when the service requires sign-in).",
      ),
    ),
  );
}
