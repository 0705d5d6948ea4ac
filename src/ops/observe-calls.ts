import {
  Code,
  ConnectError,
  type Interceptor,
  type StreamRequest,
  type UnaryRequest,
} from "@connectrpc/connect";

/** Follows one call; `end` runs exactly once. */
export interface CallObserver {
  /** The answer is ready (a unary response, or a stream about to send its headers). */
  answering?(header: Headers): void;
  /** A server stream started sending (its headers are out). */
  streamOpened?(): void;
  /** One message of a server stream is about to be sent. */
  message?(message: unknown): void;
  /** The call ended: undefined for OK, else the error the client receives. */
  end(error: ConnectError | undefined): void;
}

export type ObserveCall = (request: UnaryRequest | StreamRequest) => CallObserver;

/**
 * One interceptor for every observer (request log, metrics): a call passes one
 * layer and a stream one generator, however many follow it. Reports when each
 * call ends and with which code: a unary call when its response or error is
 * ready, a stream when its last message was sent, it failed, or the client
 * went away.
 */
export function observeCalls(...observers: readonly ObserveCall[]): Interceptor {
  return (next) => async (request) => {
    const call = allOf(observers.map((observe) => observe(request)));
    let response: Awaited<ReturnType<typeof next>>;
    try {
      response = await next(request);
    } catch (reason) {
      const error = ConnectError.from(reason);
      call.end(error);
      throw error;
    }
    call.answering(response.header);
    if (!response.stream) {
      call.end(undefined);
      return response;
    }
    call.streamOpened();
    return { ...response, message: follow(response.message, call, request.signal) };
  };
}

/** The observers of one call as one, in their order. */
function allOf(calls: readonly CallObserver[]): Required<CallObserver> {
  return {
    answering: (header) => {
      for (const call of calls) call.answering?.(header);
    },
    streamOpened: () => {
      for (const call of calls) call.streamOpened?.();
    },
    message: (message) => {
      for (const call of calls) call.message?.(message);
    },
    end: (error) => {
      for (const call of calls) call.end(error);
    },
  };
}

async function* follow<T>(
  messages: AsyncIterable<T>,
  call: Required<CallObserver>,
  signal: AbortSignal,
): AsyncIterable<T> {
  let error: ConnectError | undefined;
  try {
    for await (const message of messages) {
      call.message(message);
      yield message;
    }
  } catch (reason) {
    error = ConnectError.from(reason);
    throw error;
  } finally {
    if (error === undefined) endOnceSettled(call, signal);
    else call.end(error);
  }
}

/**
 * A stream that stops because its client left ends quietly: report why it stopped. A client
 * that cancels may half-close its side first (grpc-js sends END_STREAM, then RST_STREAM in the
 * same packet), so a handler that ends with its request stream looks complete a moment before
 * the reset is seen: the verdict waits for the I/O already received.
 */
function endOnceSettled(call: CallObserver, signal: AbortSignal): void {
  const canceled = () => ConnectError.from(signal.reason, Code.Canceled);
  if (signal.aborted) call.end(canceled());
  else setImmediate(() => call.end(signal.aborted ? canceled() : undefined));
}
