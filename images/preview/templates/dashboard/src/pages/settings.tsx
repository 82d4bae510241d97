import { toast } from "sonner";

import { Button } from "@/components/ui/button";
import { Card, CardContent, CardDescription, CardFooter, CardHeader, CardTitle } from "@/components/ui/card";
import { Input } from "@/components/ui/input";
import { Label } from "@/components/ui/label";
import { Switch } from "@/components/ui/switch";

export function Settings() {
  return (
    <Card className="max-w-xl">
      <CardHeader>
        <CardTitle>Store settings</CardTitle>
        <CardDescription>How your store appears to customers.</CardDescription>
      </CardHeader>
      <CardContent className="space-y-4">
        <div className="space-y-2">
          <Label htmlFor="store-name">Store name</Label>
          <Input id="store-name" defaultValue="Acme" />
        </div>
        <div className="flex items-center justify-between">
          <Label htmlFor="emails">Email me about new orders</Label>
          <Switch id="emails" defaultChecked />
        </div>
      </CardContent>
      <CardFooter>
        <Button onClick={() => toast.success("Settings saved")}>Save</Button>
      </CardFooter>
    </Card>
  );
}
