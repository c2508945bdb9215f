import * as net from "node:net";

/** One port number free on every address given (so "port 25" can be the same on several loopback hosts); bounded tries. */
export async function portFreeOn(addresses: readonly string[]): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, addresses[0], () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const ok = await Promise.all(addresses.map((a) => new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once("error", () => resolve(false));
      s.listen(port, a, () => s.close(() => resolve(true)));
    })));
    if (ok.every(Boolean)) return port;
  }
  throw new Error("no common free port");
}
