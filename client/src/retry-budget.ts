/**
 * Bounds retries across all calls of a client, as gRPC's retry throttling
 * does: every transient failure spends a token, every success earns back a
 * fraction of one, and retries stop while half the tokens or fewer are left.
 * A service that keeps failing thus gets fewer retries, not a multiple of the
 * load it already cannot serve.
 */
export class RetryBudget {
  readonly #maxTokens: number;
  readonly #tokensPerSuccess: number;
  #tokens: number;

  constructor({ maxTokens = 10, tokensPerSuccess = 0.1 } = {}) {
    this.#maxTokens = maxTokens;
    this.#tokensPerSuccess = tokensPerSuccess;
    this.#tokens = maxTokens;
  }

  get tokens(): number {
    return this.#tokens;
  }

  recordSuccess(): void {
    this.#tokens = Math.min(this.#maxTokens, this.#tokens + this.#tokensPerSuccess);
  }

  /** Records a transient failure; says whether a retry may follow it. */
  spendOnFailure(): boolean {
    this.#tokens = Math.max(0, this.#tokens - 1);
    return this.#tokens > this.#maxTokens / 2;
  }
}
