export default function App() {
  return (
    <main className="min-h-screen flex items-center justify-center bg-gradient-to-br from-slate-50 to-indigo-100 text-slate-800">
      <div className="text-center space-y-3 p-8">
        <div className="mx-auto h-10 w-10 animate-pulse rounded-full bg-indigo-500/80" />
        <h1 className="text-2xl font-semibold tracking-tight">Your app is on its way</h1>
        <p className="text-slate-500">Apna is writing it now. This page updates by itself.</p>
      </div>
    </main>
  );
}
